pub struct MemoryTransport;
