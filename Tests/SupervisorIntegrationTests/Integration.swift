import Testing

/// Every test that starts a real supervisor in namespaces. They run one at a time, because
/// each one mounts gocryptfs and starts a broker, and two cores are shared.
@Suite(.serialized, .enabled(if: Requirements.enabled, Requirements.reason))
struct Integration {}
