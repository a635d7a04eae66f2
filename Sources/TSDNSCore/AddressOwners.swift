/// Which devices of a list claim each address: built for all of a tailnet's 20,000
/// addresses on every read, and asked about a few dozen.
///
/// An open-addressing table of 8-byte slots (a 32-bit fingerprint of the address and the
/// device's position), linearly probed: a quarter of the memory of a `[IPAddress: Int]` (whose
/// fresh pages cost 3 µs each here) and no SipHash. A slot does not hold the address, so
/// every match is checked against the device itself; an insert compares nothing, so a
/// device's duplicate of another's address costs nothing until asked about.
struct AddressOwners: Sendable {
    /// Per slot: the fingerprint in the high half, the position + 1 in the low (0: empty).
    private var slots: [UInt64]
    /// Slot numbers are the top bits of an address's hash: `64 - log2(slots.count)`.
    private let shift: UInt64
    /// For tests: every address hashed to 0, so one slot and one fingerprint serve all and
    /// only the check against the device tells them apart.
    private let collides: Bool

    init(_ devices: [Device], everyAddressCollides collides: Bool = false) {
        self.collides = collides
        var count = 0
        for index in devices.indices { count += devices[index].ipAddresses.count }
        // Load at most 0.7: linear probing stays short.
        var size = 16
        while size * 7 < count * 10 { size *= 2 }
        slots = Array(repeating: 0, count: size)
        let shift = UInt64(64 - size.trailingZeroBitCount)
        self.shift = shift
        let mask = size - 1
        slots.withUnsafeMutableBufferPointer { slots in
            for index in devices.indices {
                // Fields, not the device: a copy of a device retains and releases its strings.
                for address in devices[index].ipAddresses {
                    let (start, fingerprint) = Self.place(address, shift: shift, collides: collides)
                    var slot = start
                    while slots[slot] != 0 { slot = (slot + 1) & mask }
                    slots[slot] = fingerprint << 32 | UInt64(index + 1)
                }
            }
        }
    }

    /// The positions of the devices in `devices` (the list it was built from) that claim
    /// `address`, in list order, each once.
    func owners(of address: IPAddress, in devices: [Device]) -> [Int] {
        let (start, fingerprint) = Self.place(address, shift: shift, collides: collides)
        let mask = slots.count - 1
        var owners: [Int] = []
        var slot = start
        while slots[slot] != 0 {
            if slots[slot] >> 32 == fingerprint {
                let index = Int(slots[slot] & 0xFFFF_FFFF) - 1
                // One address's slots lie along one probe sequence in the order they were
                // filled, the list's; a device that lists it twice has two.
                if owners.last != index, devices[index].ipAddresses.contains(address) { owners.append(index) }
            }
            slot = (slot + 1) & mask
        }
        return owners
    }

    /// The first slot to look at and the fingerprint: the top and bottom bits of a 64-bit
    /// mix of the address's words (SplitMix64's finaliser: every input bit moves both).
    @inline(__always)
    private static func place(_ address: IPAddress, shift: UInt64, collides: Bool) -> (slot: Int, fingerprint: UInt64) {
        if collides { return (0, 0) }
        let (high, low) = address.words
        var mixed = low ^ (high &* 0x9E37_79B9_7F4A_7C15)
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        mixed ^= mixed >> 31
        return (Int(truncatingIfNeeded: mixed >> shift), mixed & 0xFFFF_FFFF)
    }
}
