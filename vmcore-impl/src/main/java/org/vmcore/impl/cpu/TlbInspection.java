package org.vmcore.impl.cpu;

import java.util.ArrayList;
import java.util.List;
import java.util.function.IntFunction;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.PageSize;
import org.vmcore.api.TlbEntry;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.tlb.Tlb;

/**
 * Reading one CPU's TLB from any thread: each read runs as a flush does, through the
 * {@link CpuHandshake}, so it never sees the TLB in the middle of an access. It changes nothing.
 */
final class TlbInspection {
    private final int cpu;
    private final Tlb tlb;
    private final CpuHandshake handshake;
    private final IntFunction<AddressSpace> addressSpaceOfPcid;

    TlbInspection(int cpu, Tlb tlb, CpuHandshake handshake, IntFunction<AddressSpace> addressSpaceOfPcid) {
        this.cpu = cpu;
        this.tlb = tlb;
        this.handshake = handshake;
        this.addressSpaceOfPcid = addressSpaceOfPcid;
    }

    /** Every cached translation, with the live address space its PCID tags (or null). */
    List<TlbEntry> entries() {
        List<TlbEntry> result = new ArrayList<>();
        handshake.runFlush(() -> {
            for (Tlb.Entry e : tlb.entries(-1)) {
                result.add(new TlbEntry(cpu, e.pcid(), addressSpaceOfPcid.apply(e.pcid()), e.va(), e.size(), e.pfn(),
                        (e.value() & Pte.RW) != 0, (e.value() & Pte.DIRTY) != 0));
            }
        });
        return result;
    }

    /** Whether a translation of {@code va} under {@code pcid} is cached. */
    boolean holds(int pcid, long va) {
        boolean[] held = new boolean[1];
        handshake.runFlush(() -> held[0] = tlb.lookup(pcid, va) != 0);
        return held[0];
    }

    /** Paging-structure cache entries of {@code level} (Tlb.PML4E, PDPTE, PDE) under {@code pcid}. */
    List<Tlb.Entry> pagingStructureEntries(int level, int pcid) {
        List<Tlb.Entry> result = new ArrayList<>();
        handshake.runFlush(() -> result.addAll(tlb.pscEntries(level, pcid)));
        return result;
    }

    /** The page size of the cached translation for va under {@code pcid}, or null. */
    PageSize cachedSize(int pcid, long va) {
        PageSize[] size = new PageSize[1];
        handshake.runFlush(() -> size[0] = tlb.lookupSize(pcid, va));
        return size[0];
    }
}
