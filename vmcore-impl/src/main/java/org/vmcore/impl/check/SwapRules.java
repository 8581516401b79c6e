package org.vmcore.impl.check;

import java.util.List;
import java.util.function.LongToIntFunction;
import org.eclipse.collections.impl.map.mutable.primitive.LongIntHashMap;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.impl.swap.SwapCache;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.pgtable.SwapEntry;

/**
 * The invariant checker's rules for swap: every swap entry names a slot of the device in a
 * private anonymous VMA, and each slot's swap count equals the entries that name it (a shared
 * PMD table counting once); a slot in use has entries or a swap-cache page; a page in the swap
 * cache is a live base page counted once more in its refcount (a swap count of 0 with the page
 * still cached is allowed, as SWAP_HAS_CACHE alone is in Linux); VmSwap equals the swap entries of each address space.
 */
final class SwapRules {
    private final SwapCache cache;
    private final FrameDescriptors d;
    private final LongToIntFunction speculativeRefs;
    private final LongIntHashMap entries = new LongIntHashMap(); // slot -> swap entries naming it

    SwapRules(SwapCache cache, FrameDescriptors d, LongToIntFunction speculativeRefs) {
        this.cache = cache;
        this.d = d;
        this.speculativeRefs = speculativeRefs;
    }

    /** A swap entry {@code e} at {@code va} of {@code mm}; counted against its slot when its table is counted. */
    void entry(SimAddressSpace mm, long va, long e, boolean countLeaves, List<String> out) {
        long slot = SwapEntry.offset(e);
        String where = "swap entry: " + mm + " 0x" + Long.toHexString(va) + " -> slot " + slot;
        if (!cache.device().isValidSlot(slot)) {
            out.add(where + " names no slot of the swap device (1.." + cache.device().totalPages() + ")");
            return;
        }
        VmArea v = mm.vma(va);
        if (v == null || v.kind() != VmaKind.ANONYMOUS_PRIVATE) {
            out.add(where + " lies in " + (v == null ? "no VMA" : "a " + v.kind() + " VMA"));
        }
        if (countLeaves) {
            entries.addToValue(slot, 1);
        }
    }

    /** VmSwap of {@code mm} against the entries its walk found. */
    void counter(SimAddressSpace mm, long found, List<String> out) {
        if (mm.counters().swapPages() != found) {
            out.add("VmSwap: " + mm + " counts " + mm.counters().swapPages() + " swap entries but its tables hold " + found);
        }
    }

    /** The swap-cache reference a page holds, for the refcount rule. */
    int cacheRefs(long pfn) {
        return cache.slotOf(pfn) >= 0 ? 1 : 0;
    }

    /** The slots against the entries counted; the swap-cache pages nothing maps. */
    void checkSlots(LongIntHashMap leaves, List<String> out) {
        cache.forEachSlotInUse((slot, count, hasCache, pfn) -> {
            int found = entries.get(slot);
            if (count != found) {
                out.add("swap count: slot " + slot + " has swap count " + count + " but " + found + " swap entries name it");
            }
            if (hasCache != (pfn >= 0)) {
                out.add("swap cache: slot " + slot + (hasCache ? " has SWAP_HAS_CACHE but no page" : " has a page but no SWAP_HAS_CACHE"));
            }
            if (count == 0 && !hasCache) {
                out.add("swap slot leak: slot " + slot + " is in use with no entry and no page");
            }
            if (pfn >= 0) {
                checkPage(slot, count, pfn, leaves, out);
            }
        });
        entries.forEachKeyValue((slot, found) -> {
            if (cache.count(slot) == 0) {
                out.add("swap count: slot " + slot + " is free but " + found + " swap entries name it");
            }
        });
    }

    private void checkPage(long slot, int count, long pfn, LongIntHashMap leaves, List<String> out) {
        int flags = d.flags(pfn);
        if ((flags & FrameFlags.ALLOCATED) == 0 || (flags & FrameFlags.HUGETLB) != 0 || d.order(pfn) != 0) {
            out.add("swap cache: slot " + slot + " holds pfn 0x" + Long.toHexString(pfn) + " that is no live base page: " + d.describe(pfn));
        }
        if (!leaves.containsKey(pfn) && (d.mapcount(pfn) != 0 || d.refcount(pfn) != 1 + speculativeRefs.applyAsInt(pfn))) {
            out.add("swap cache: unmapped pfn 0x" + Long.toHexString(pfn) + " of slot " + slot + " has mapcount " + d.mapcount(pfn)
                    + " and refcount " + d.refcount(pfn) + " (the cache holds one reference)");
        }
    }
}
