package org.vmcore.api;

/**
 * When anonymous memory gets transparent huge pages: the values of
 * /sys/kernel/mm/transparent_hugepage/enabled. A transparent huge page is one 2 MiB folio mapped
 * by one PMD entry; it needs a private anonymous VMA that covers the whole 2 MiB-aligned range.
 */
public enum ThpMode {
    /** Every private anonymous VMA gets huge pages, unless it was advised {@link Advice#NOHUGEPAGE}. */
    ALWAYS,
    /** Only VMAs advised {@link Advice#HUGEPAGE} get huge pages (the default, as on most distributions). */
    MADVISE,
    /** No huge pages on fault; {@link Advice#COLLAPSE} still makes them where asked. */
    NEVER
}
