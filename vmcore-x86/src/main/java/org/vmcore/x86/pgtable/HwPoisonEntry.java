package org.vmcore.x86.pgtable;

/** Hwpoison entries: a poisoned page's mapping; an access through it raises SIGBUS. */
public final class HwPoisonEntry {
    private HwPoisonEntry() {
    }

    /**
     * The hwpoison entry for {@code pfn}.
     *
     * @param pfn the frame number of the poisoned page
     * @return a non-present swap-format entry of type {@link SwapEntry#TYPE_HWPOISON}
     */
    public static long make(long pfn) {
        return SwapEntry.make(SwapEntry.TYPE_HWPOISON, pfn, 0);
    }

    /**
     * Whether {@code entry} is a hwpoison entry.
     *
     * @param entry a page-table entry
     * @return true when the entry is a swap entry of the hwpoison type
     */
    public static boolean isHwPoison(long entry) {
        return Pte.isSwap(entry) && SwapEntry.type(entry) == SwapEntry.TYPE_HWPOISON;
    }

    /**
     * The poisoned PFN.
     *
     * @param entry a hwpoison entry
     * @return the frame number of the poisoned page
     */
    public static long pfn(long entry) {
        return SwapEntry.offset(entry);
    }
}
