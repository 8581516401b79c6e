/**
 * The generic mm: machine, address spaces and VMAs, faults, hugetlbfs with shared PMD tables,
 * rmap, migration and MMU notifiers, built on the x86-64 layer.
 */
module org.vmcore.impl {
    requires transitive org.vmcore.api;
    requires org.vmcore.x86;
    requires org.eclipse.collections.api;
    requires org.eclipse.collections.impl;
}
