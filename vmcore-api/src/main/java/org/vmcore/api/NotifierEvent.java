package org.vmcore.api;

/** Why a range is invalidated (the kernel's enum mmu_notifier_event). */
public enum NotifierEvent {
    /** The range is unmapped (munmap, exit). */
    UNMAP,
    /** Entries are cleared and may come back (COW break, unshare, truncation). */
    CLEAR,
    /** mprotect of a VMA range. */
    PROTECTION_VMA,
    /** Write protection of pages (fork). */
    PROTECTION_PAGE,
    /** Soft-dirty clearing. */
    SOFT_DIRTY,
    /** The address space is going away. */
    RELEASE,
    /** Pages are being migrated. */
    MIGRATE,
    /** Exclusive device access. */
    EXCLUSIVE
}
