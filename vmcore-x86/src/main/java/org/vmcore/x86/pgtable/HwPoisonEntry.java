package org.vmcore.x86.pgtable;

/** Hwpoison entries: a poisoned page's mapping; an access through it raises SIGBUS. */
public final class HwPoisonEntry {
    private HwPoisonEntry() {
    }

    /** The hwpoison entry for {@code pfn}. */
    public static long make(long pfn) {
        return SwapEntry.make(SwapEntry.TYPE_HWPOISON, pfn, 0);
    }

    /** Whether {@code entry} is a hwpoison entry. */
    public static boolean isHwPoison(long entry) {
        return Pte.isSwap(entry) && SwapEntry.type(entry) == SwapEntry.TYPE_HWPOISON;
    }

    /** The poisoned PFN. */
    public static long pfn(long entry) {
        return SwapEntry.offset(entry);
    }
}
