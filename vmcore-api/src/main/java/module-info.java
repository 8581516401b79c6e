/**
 * The public face of vmcore: the machine, address spaces, hugetlbfs, rmap, value types, enums
 * and exceptions. No implementation lives here and no {@code MemorySegment} appears in any
 * signature; vmcore-impl provides {@link org.vmcore.api.MachineProvider}.
 */
module org.vmcore.api {
    exports org.vmcore.api;

    uses org.vmcore.api.MachineProvider;
}
