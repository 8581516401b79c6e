/**
 * The public face of vmcore: value types, enums and exceptions shared by every module.
 * No implementation lives here and no {@code MemorySegment} appears in any signature.
 */
module org.vmcore.api {
    exports org.vmcore.api;
}
