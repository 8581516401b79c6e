/**
 * The x86-64 architecture layer: simulated physical memory (NUMA nodes, frame descriptors,
 * buddy allocators, lazily materialised contents) and page tables in the real x86-64 entry
 * format with a hardware-like walker. It knows nothing of VMAs, files or processes.
 *
 * <p>The exported packages are the raw layer: what a user needs to build tables, walk them and
 * read frames. The engine's side of the same objects (raw entry slots, descriptor updates, host
 * pages of frames, the TLB's L1 pages, the page-table windows) is in
 * {@code org.vmcore.x86.internal}, exported only to the generic mm, {@code org.vmcore.impl}.
 */
@SuppressWarnings("module") // "x86" is the architecture's name, terminal digits and all
module org.vmcore.x86 {
    requires transitive org.vmcore.api;
    requires org.eclipse.collections.api;
    requires org.eclipse.collections.impl;

    exports org.vmcore.x86.mem;
    exports org.vmcore.x86.pgtable;
    exports org.vmcore.x86.tlb;
    exports org.vmcore.x86.internal to org.vmcore.impl;
}
