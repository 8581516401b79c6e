package org.vmcore.impl.vma;

import java.util.ArrayList;
import java.util.List;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.Vma;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.lock.LockClass;
import org.vmcore.impl.lock.RwSem;
import org.vmcore.x86.pgtable.Pte;

/**
 * A VMA (vm_area_struct): {@code [start, end)} of one address space with one protection and
 * one backing. {@code pgoff} is vm_pgoff in 4 KiB pages: the file offset of {@code start} for
 * file and shmem mappings, {@code start >> 12} for private anonymous ones.
 */
public final class VmArea {
    private final MmStruct owner;
    // Read by rmap walkers of other address spaces (under the rmap lock) and by parallel faults.
    private volatile long start;
    private volatile long end;
    private volatile Protection protection;
    private final VmaKind kind;
    private boolean locked;
    private final HugetlbFile file;
    private final FileMapping mapping; // the hugetlbfs file's or the shmem object's, else null
    private long pgoff;
    private final PageSize pageSize;
    /** The anon_vma new anonymous pages of this VMA go under (null until the first needs it). */
    private volatile AnonVma anonVma; // set once by anon_vma_prepare, read by parallel faults
    /** Every anon_vma this VMA is linked into: the anon_vma_chain. */
    private final List<AnonVma> anonChain = new ArrayList<>();
    /** For private hugetlb: this VMA owns its pool reservations (HPAGE_RESV_OWNER). */
    private boolean reservationOwner;
    /**
     * For private hugetlb: the reservation owner took a page of this VMA back (unmap_ref_private),
     * so a later fault here cannot be told from lost data and gets SIGBUS (HPAGE_RESV_UNMAPPED).
     */
    private boolean reservationUnmapped;
    // Set by the final zap (munmap, exit): no huge_pmd_share may take this VMA's table any more.
    private volatile boolean unshareable;
    // Set when the VMA leaves its address space, before it is unlinked from the rmap: a walker
    // that finds it clear under the rmap lock may use the VMA's page tables.
    private volatile boolean detached;
    /** For a private owner: the file page from which its reservations were given back by a truncation. */
    private long reservationsEnd = Long.MAX_VALUE;
    /** VM_HUGEPAGE, VM_NOHUGEPAGE or neither (0): what MADV_HUGEPAGE and MADV_NOHUGEPAGE set. */
    private volatile int hugepageAdvice;
    /** {@link #hugepageAdvice}: MADV_HUGEPAGE. */
    public static final int VM_HUGEPAGE = 1;
    /** {@link #hugepageAdvice}: MADV_NOHUGEPAGE. */
    public static final int VM_NOHUGEPAGE = 2;
    /** The hugetlb VMA lock (hugetlb_vma_lock) of a hugetlb VMA, else null. */
    private final RwSem hugetlbVmaLock;

    /** Lock class of every hugetlb VMA lock. */
    public static final LockClass HUGETLB_VMA_LOCK = LockClass.of("hugetlb_vma_lock");

    public VmArea(MmStruct owner, long start, long end, Protection protection, VmaKind kind, boolean locked,
                  HugetlbFile file, FileMapping mapping, long pgoff, PageSize pageSize) {
        this.owner = owner;
        this.start = start;
        this.end = end;
        this.protection = protection;
        this.kind = kind;
        this.locked = locked;
        this.file = file;
        this.mapping = mapping;
        this.pgoff = pgoff;
        this.pageSize = pageSize;
        this.hugetlbVmaLock = kind.isHugetlb() ? new RwSem(HUGETLB_VMA_LOCK) : null;
    }

    /** {@link #VM_HUGEPAGE}, {@link #VM_NOHUGEPAGE} or 0. */
    public int hugepageAdvice() {
        return hugepageAdvice;
    }

    /** Sets VM_HUGEPAGE or VM_NOHUGEPAGE (madvise_update_vma, on a VMA cut to the advised range). */
    public void setHugepageAdvice(int advice) {
        hugepageAdvice = advice;
    }

    /** Whether the VMA is being torn down and offers its PMD tables to no one (hugetlb_vma_lock_free). */
    public boolean unshareable() {
        return unshareable;
    }

    /** The final zap has begun: see {@link #unshareable()}. */
    public void markUnshareable() {
        unshareable = true;
    }

    /**
     * For a private reservation owner: the huge-page index of the file from which a truncation
     * already gave its reservations back (so a second pass gives nothing back twice); unbounded
     * until then. Guarded by the VMA lock.
     */
    public long reservationsEnd() {
        return reservationsEnd;
    }

    /** Records that the reservations from file page {@code index} on were given back. */
    public void setReservationsEnd(long index) {
        reservationsEnd = index;
    }

    /**
     * The hugetlb VMA lock (40549ba8f8e0): faults hold it for read while they look up and fill
     * an entry, so no one unshares the PMD table under them; whoever unshares holds it for write.
     * Null for a VMA that is not hugetlb.
     */
    public RwSem hugetlbVmaLock() {
        return hugetlbVmaLock;
    }

    public MmStruct owner() {
        return owner;
    }

    public long start() {
        return start;
    }

    public long end() {
        return end;
    }

    public Protection protection() {
        return protection;
    }

    public VmaKind kind() {
        return kind;
    }

    public boolean locked() {
        return locked;
    }

    /** The hugetlbfs file (vm_file) of a hugetlb mapping, else null; the hugetlb package knows its implementation. */
    public HugetlbFile file() {
        return file;
    }

    public FileMapping mapping() {
        return mapping;
    }

    public long pgoff() {
        return pgoff;
    }

    public PageSize pageSize() {
        return pageSize;
    }

    public AnonVma anonVma() {
        return anonVma;
    }

    public List<AnonVma> anonChain() {
        return anonChain;
    }

    public boolean reservationOwner() {
        return reservationOwner;
    }

    public boolean reservationUnmapped() {
        return reservationUnmapped;
    }

    /** Marks the VMA as having lost a page to the reservation owner (set_vma_resv_flags HPAGE_RESV_UNMAPPED). */
    public void setReservationUnmapped() {
        this.reservationUnmapped = true;
    }

    /** Length in 4 KiB pages. */
    public long pages() {
        return (end - start) >>> 12;
    }

    public boolean contains(long va) {
        return va >= start && va < end;
    }

    /** Whether {@code [from, to)} lies inside this VMA (range_in_vma). */
    public boolean containsRange(long from, long to) {
        return from >= start && to <= end;
    }

    /** The 4 KiB page offset of {@code va} in the mapping (linear_page_index). */
    public long linearPageIndex(long va) {
        return ((va - start) >>> 12) + pgoff;
    }

    /** The index of the page of this VMA's page size that maps {@code va}, in file pages (hugetlb). */
    public long hugePageIndex(long va) {
        return (linearPageIndex(va) << 12) >>> pageSize.shift();
    }

    /** The address of 4 KiB page offset {@code index} in this VMA (vma_address), or -1 if outside. */
    public long address(long index) {
        long va = start + ((index - pgoff) << 12);
        return index >= pgoff && va < end ? va : -1;
    }

    public void setAnonVma(AnonVma anonVma) {
        this.anonVma = anonVma;
    }

    public void setReservationOwner(boolean owner) {
        this.reservationOwner = owner;
    }

    public void setProtection(Protection protection) {
        this.protection = protection;
    }

    /** Whether the VMA has left its address space (munmap, exit, merge); see {@link #markDetached}. */
    public boolean detached() {
        return detached;
    }

    /** The VMA leaves its address space: rmap walkers that meet it from now on pass it by. */
    public void markDetached() {
        detached = true;
    }

    void setEnd(long newEnd) {
        end = newEnd;
    }

    /** A copy of this VMA over {@code [from, to)} for the same owner (split_vma's new half). */
    public VmArea slice(long from, long to) {
        return copyAt(from, from, to);
    }

    /**
     * A copy of this VMA's {@code [from, to)} placed at {@code at} (copy_vma for mremap): the same
     * offsets into its object, the same anon_vma chain, so its pages' rmap finds them there.
     */
    public VmArea copyAt(long at, long from, long to) {
        VmArea copy = new VmArea(owner, at, at + (to - from), protection, kind, locked, file, mapping,
                pgoff + ((from - start) >> 12), pageSize);
        copy.anonVma = anonVma;
        copy.anonChain.addAll(anonChain);
        copy.reservationOwner = reservationOwner;
        copy.reservationUnmapped = reservationUnmapped;
        copy.reservationsEnd = reservationsEnd;
        copy.hugepageAdvice = hugepageAdvice;
        return copy;
    }

    /** A copy for a forked child. */
    public VmArea forkCopy(MmStruct child) {
        VmArea copy = new VmArea(child, start, end, protection, kind, locked, file, mapping, pgoff, pageSize);
        copy.anonChain.addAll(anonChain);
        copy.hugepageAdvice = hugepageAdvice;
        return copy;
    }

    /** Whether {@code next}, starting at this VMA's end, could be merged into it (vma_merge). */
    public boolean canMergeWith(VmArea next) {
        return next.protection.equals(protection) && anonVmaCompatible(next) && next.reservationOwner == reservationOwner
                && next.reservationUnmapped == reservationUnmapped && mergeableAnonVma(next);
    }

    /**
     * is_mergeable_anon_vma: equal anon_vmas, or one side has none and the other's anon_vma_chain
     * is singular (a forked VMA's chain also holds its parent's anon_vma, whose pages must keep
     * their own VMA range).
     */
    private boolean mergeableAnonVma(VmArea next) {
        if (anonVma == null || next.anonVma == null) {
            return anonVma == null ? next.anonVma == null || next.anonChain.size() == 1 : anonChain.size() == 1;
        }
        return next.anonVma == anonVma && next.anonChain.equals(anonChain);
    }

    /**
     * anon_vma_compatible: {@code next} starts at this VMA's end, with the same backing, page
     * offsets that continue, and the same flags apart from the access bits (so their anonymous
     * pages could live under one anon_vma and a later mprotect could merge them).
     */
    public boolean anonVmaCompatible(VmArea next) {
        return next.start == end && next.kind == kind && next.locked == locked && next.hugepageAdvice == hugepageAdvice
                && next.file == file
                && next.mapping == mapping && next.pageSize == pageSize && next.pgoff == pgoff + pages();
    }

    /**
     * Takes over {@code other}'s anon_vma and chain, when this VMA has none and absorbs
     * {@code other} (vma_expand's dup_anon_vma); the caller then removes {@code other}.
     */
    public void adoptAnonVma(VmArea other) {
        if (anonVma != null || other.anonVma == null) {
            return;
        }
        anonVma = other.anonVma;
        anonChain.addAll(other.anonChain);
        for (AnonVma a : anonChain) {
            a.link(this);
        }
    }

    /**
     * The protection bits of a leaf in this VMA (vm_get_page_prot), with RW only when
     * {@code writable}: PROT_NONE becomes a PROTNONE entry, no PROT_EXEC sets NX.
     */
    public long pteProtection(boolean writable) {
        if (!protection.accessible()) {
            return Pte.PROTNONE;
        }
        long flags = Pte.PRESENT | Pte.USER;
        if (writable) {
            flags |= Pte.RW;
        }
        if (!protection.execute()) {
            flags |= Pte.NX;
        }
        return flags;
    }

    /** Flags equal apart from VM_LOCKED: the vm_flags test of page_table_shareable. */
    public boolean sameFlagsIgnoringLock(VmArea other) {
        return kind == other.kind && protection.equals(other.protection);
    }

    public Vma snapshot() {
        return new Vma(owner, start, end, protection, kind, locked, file, kind.isHugetlb() || kind.isShared() ? pgoff : 0,
                pageSize);
    }

    @Override
    public String toString() {
        return snapshot().toString();
    }
}
