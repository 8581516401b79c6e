package org.vmcore.impl.vma;

/**
 * What a page's mapping field names: the anon_vma of an anonymous page or the address_space of
 * a file or shmem page (the kernel tells them apart by the PAGE_MAPPING_ANON bit, vmcore by
 * type as well).
 */
public sealed interface MappingOwner permits AnonVma, FileMapping {
    /** The identifier stored in a page's mapping field. */
    long id();
}
