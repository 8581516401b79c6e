package org.vmcore.impl.mm;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.PageTableEntry;
import org.vmcore.api.PageTableLevel;
import org.vmcore.api.PageTableView;
import org.vmcore.api.PagingMode;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;

/**
 * The public read-only page-table view of one address space (walk_page_range and the
 * p*d_offset helpers, read only): every call takes the machine lock, checks the address space is
 * alive and reads entries through {@link RawPageTable#entry}, never writing one. The kernel's level
 * names map onto the x86 levels by paging mode: the PGD is the root (PML4, or PML5 with LA57) and
 * the P4D exists only under LA57.
 */
@SuppressWarnings("try") // a lock hold is used only for its scope
final class PageWalk implements PageTableView {
    private final SimAddressSpace mm;
    private final RawPageTable table;
    private final PagingMode mode;
    private final Level root;

    PageWalk(SimAddressSpace mm, RawPageTable table) {
        this.mm = mm;
        this.table = table;
        this.mode = table.mode();
        this.root = Level.root(mode);
    }

    @Override
    public boolean forEachLeaf(long start, long end, Visitor visitor) {
        try (MachineLock.Held locked = mm.lock().shared(); MachineLock.Held mmap = mm.mmapRead()) {
            mm.ensureOpen();
            checkAligned(start, "start");
            checkAligned(end, "end");
            if (end <= start || end > mode.userAddressLimit()) {
                throw new InvalidArgumentException("end", end, "must be above start 0x" + Long.toHexString(start)
                        + " and at most the end of user space 0x" + Long.toHexString(mode.userAddressLimit()));
            }
            if (visitor == null) {
                throw new InvalidArgumentException("visitor", null, "must not be null");
            }
            return visit(root, 0, start, end, visitor);
        }
    }

    /** Visits the table of {@code level} covering [base, base + 512 entries) from start to end. */
    private boolean visit(Level level, long base, long start, long end, Visitor visitor) {
        long span = level.entrySpan();
        for (long va = Math.max(base, start) & -span; va < end; va += span) {
            long e = table.entry(va, level);
            if (pointsToTable(e, level)) {
                if (!visit(level.below(), va, Math.max(va, start), Math.min(end, va + span), visitor)) {
                    return false;
                }
            } else if (!Pte.isNone(e) && !visitor.visit(va, name(level), e, physicalAddress(e))) {
                return false;
            }
            if (va + span < va) {
                break; // the last entry of the address space
            }
        }
        return true;
    }

    @Override
    public Optional<PageTableEntry> entry(long va, PageTableLevel level) {
        try (MachineLock.Held locked = mm.lock().shared(); MachineLock.Held mmap = mm.mmapRead()) {
            mm.ensureOpen();
            checkUser(va);
            Level wanted = level(level);
            long tablePa = table.cr3();
            for (Level at = root; ; at = at.below()) {
                long e = table.entry(va, at);
                if (at == wanted) {
                    return Optional.of(entry(va, at, tablePa, e));
                }
                if (!pointsToTable(e, at)) {
                    return Optional.empty();
                }
                tablePa = Pte.pfn(e) << 12;
            }
        }
    }

    @Override
    public List<PageTableEntry> walk(long va) {
        try (MachineLock.Held locked = mm.lock().shared(); MachineLock.Held mmap = mm.mmapRead()) {
            mm.ensureOpen();
            checkUser(va);
            List<PageTableEntry> out = new ArrayList<>(mode.levels());
            long tablePa = table.cr3();
            for (Level at = root; ; at = at.below()) {
                long e = table.entry(va, at);
                out.add(entry(va, at, tablePa, e));
                if (!pointsToTable(e, at)) {
                    return out;
                }
                tablePa = Pte.pfn(e) << 12;
            }
        }
    }

    private PageTableEntry entry(long va, Level at, long tablePa, long e) {
        return new PageTableEntry(va & -at.entrySpan(), name(at), at.index(va), tablePa, e, physicalAddress(e));
    }

    /** What a pte_present entry maps (P set, or PROT_NONE with its PFN inverted), else -1. */
    private static long physicalAddress(long e) {
        return Pte.isPresent(e) ? Pte.pfn(e) << 12 : -1;
    }

    /** An entry with P set above the PTE level and without PS: the walk goes on in the table it names. */
    private static boolean pointsToTable(long e, Level level) {
        return (e & Pte.PRESENT) != 0 && !Pte.isLeaf(e, level);
    }

    /** The kernel's name of an x86 level under this paging mode. */
    private PageTableLevel name(Level level) {
        return switch (level) {
            case PML5 -> PageTableLevel.PGD;
            case PML4 -> mode == PagingMode.FIVE_LEVEL ? PageTableLevel.P4D : PageTableLevel.PGD;
            case PUD -> PageTableLevel.PUD;
            case PMD -> PageTableLevel.PMD;
            case PTE -> PageTableLevel.PTE;
        };
    }

    private Level level(PageTableLevel level) {
        if (level == null) {
            throw new InvalidArgumentException("level", null, "must not be null");
        }
        return switch (level) {
            case PGD -> root;
            case P4D -> {
                if (mode != PagingMode.FIVE_LEVEL) {
                    throw new InvalidArgumentException("level", level, "must not be P4D under 4-level paging, which folds it"
                            + " into the PGD");
                }
                yield Level.PML4;
            }
            case PUD -> Level.PUD;
            case PMD -> Level.PMD;
            case PTE -> Level.PTE;
        };
    }

    private void checkUser(long va) {
        if (va < 0 || va >= mode.userAddressLimit()) {
            throw new InvalidArgumentException("va", va, "must be a user-space address, below 0x"
                    + Long.toHexString(mode.userAddressLimit()));
        }
    }

    private void checkAligned(long address, String name) {
        if (address < 0 || (address & 0xFFF) != 0) {
            throw new InvalidArgumentException(name, address, "must be a non-negative 4K aligned address");
        }
    }

    @Override
    public String toString() {
        return "page tables of " + mm;
    }
}
