/// Which devices of a list claim each address: filled for all of a tailnet's 20,000
/// addresses on every read, and asked about a few dozen.
///
/// An open-addressing table of 8-byte slots (a 32-bit fingerprint of the address and the
/// device's position), linearly probed: a quarter of the memory of a `[IPAddress: Int]`
/// (whose fresh pages cost 3 µs each here) and no SipHash. A slot does not hold the address,
/// so every match is checked against the device itself; an insert compares nothing, so a
/// device's duplicate of another's address costs nothing until asked about.
struct AddressOwners: Sendable {
    /// Per slot: the fingerprint in the high half, the position + 1 in the low (0: empty).
    private var slots: [UInt64]
    private var filled = 0
    /// log2(slots.count): an address's first slot is the top `bits` of its fingerprint, so
    /// the table grows without the addresses.
    private var bits: Int
    /// For tests: every address given one fingerprint, whose first slot is the table's last,
    /// so that only the check against the device tells them apart and every run of slots
    /// wraps around the end (and comes back reordered when the table grows).
    private let collides: Bool

    /// Room for `expected` addresses before the table grows.
    init(expected: Int, everyAddressCollides collides: Bool = false) {
        self.collides = collides
        bits = 4
        while (1 << bits) * 7 < expected * 10 { bits += 1 }
        slots = Array(repeating: 0, count: 1 << bits)
    }

    /// Records that the device at `position` claims `address`.
    mutating func insert(_ address: IPAddress, position: Int) {
        precondition(position < 0xFFFF_FFFF, "a slot holds a 32-bit position")
        // Load at most 0.7: linear probing stays short.
        if (filled + 1) * 10 > slots.count * 7 { grow() }
        place(fingerprint: fingerprint(address), entry: UInt64(position + 1))
        filled += 1
    }

    /// The positions of the devices in `devices` (the list it was filled from) that claim
    /// `address`, in list order, each once.
    func owners(of address: IPAddress, in devices: [Device]) -> [Int] {
        let fingerprint = fingerprint(address)
        let mask = slots.count - 1
        var owners: [Int] = []
        var slot = Int(fingerprint >> (32 - UInt64(bits)))
        while slots[slot] != 0 {
            if slots[slot] >> 32 == fingerprint {
                let position = Int(slots[slot] & 0xFFFF_FFFF) - 1
                if devices[position].ipAddresses.contains(address) { owners.append(position) }
            }
            slot = (slot + 1) & mask
        }
        // A device that lists an address twice has two slots; a table that grew may have
        // put a later device's slot first.
        return owners.count < 2 ? owners : Array(Set(owners)).sorted()
    }

    private mutating func place(fingerprint: UInt64, entry: UInt64) {
        let mask = slots.count - 1
        var slot = Int(fingerprint >> (32 - UInt64(bits)))
        while slots[slot] != 0 { slot = (slot + 1) & mask }
        slots[slot] = fingerprint << 32 | entry
    }

    private mutating func grow() {
        let old = slots
        bits += 1
        slots = Array(repeating: 0, count: 1 << bits)
        for slot in old where slot != 0 { place(fingerprint: slot >> 32, entry: slot & 0xFFFF_FFFF) }
    }

    /// 32 bits of a 64-bit mix of the address's words (SplitMix64's finaliser: every input
    /// bit moves them all).
    @inline(__always)
    private func fingerprint(_ address: IPAddress) -> UInt64 {
        if collides { return 0xFFFF_FFFF }
        let (high, low) = address.words
        var mixed = low ^ (high &* 0x9E37_79B9_7F4A_7C15)
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return (mixed ^ (mixed >> 31)) >> 32
    }
}
