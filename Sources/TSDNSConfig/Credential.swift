/// How the client authenticates. Secrets never appear in logs or errors.
public enum Credential: Sendable {
    case apiKey(String)
    case oauth(clientID: String, clientSecret: String)
}
