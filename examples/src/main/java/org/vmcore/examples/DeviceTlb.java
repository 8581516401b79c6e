package org.vmcore.examples;

import java.util.ArrayList;
import java.util.List;
import org.eclipse.collections.impl.map.mutable.primitive.LongLongHashMap;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Machine;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;

/**
 * A secondary MMU: a device TLB that caches translations of one address space (4 KiB at a time)
 * and reads and writes memory through them, as an IOMMU-backed accelerator or a KVM shadow table
 * does. It stays coherent through MMU notifiers: it drops cached translations when a range
 * starts being invalidated and when the CPU TLBs are flushed, and it refuses to cache new ones
 * while an invalidation is in progress (a real device would retry its fault).
 *
 * <p>Every use of a cached translation is checked against the page tables with
 * {@link Machine#checkTranslation}: a use of a stale translation is flagged here and, with the
 * machine's detector on, recorded there. {@code obeyNotifiers = false} builds a broken device
 * that ignores invalidations, to show what the checker catches. {@link #shadowTable} builds one
 * that, like KVM's shadow page tables, forgets translations only when a range starts being
 * invalidated, not when the CPU TLBs are flushed.
 */
public final class DeviceTlb implements MmuNotifier {
    private final Machine machine;
    private final AddressSpace mm;
    private final String name;
    private final boolean obeyNotifiers;
    private final boolean flushedWithCpu;
    private final LongLongHashMap cache = new LongLongHashMap(); // virtual page -> physical page address
    private final List<String> received = new ArrayList<>();
    private int invalidationsInProgress;
    private long staleUses;
    private long hits;
    private long misses;

    public DeviceTlb(Machine machine, AddressSpace mm, String name, boolean obeyNotifiers) {
        this(machine, mm, name, obeyNotifiers, true);
    }

    private DeviceTlb(Machine machine, AddressSpace mm, String name, boolean obeyNotifiers, boolean flushedWithCpu) {
        this.machine = machine;
        this.mm = mm;
        this.name = name;
        this.obeyNotifiers = obeyNotifiers;
        this.flushedWithCpu = flushedWithCpu;
        mm.registerNotifier(this);
    }

    /**
     * A secondary MMU in the style of KVM's shadow page tables: it drops translations in
     * invalidateRangeStart only and ignores the flushes of the CPU TLBs
     * (invalidateSecondaryTlbs), so it relies on the notifier ranges alone.
     */
    public static DeviceTlb shadowTable(Machine machine, AddressSpace mm, String name) {
        return new DeviceTlb(machine, mm, name, true, false);
    }

    /** Reads 8 bytes at {@code va} through the device TLB (a DMA read). */
    public synchronized long read(long va) {
        return machine.readPhysical(translate(va, false), 8);
    }

    /** Writes 8 bytes at {@code va} through the device TLB (a DMA write). */
    public synchronized void write(long va, long value) {
        machine.writePhysical(translate(va, true), 8, value);
    }

    private long translate(long va, boolean write) {
        long page = va & ~0xFFFL;
        long pa = cache.getIfAbsent(page, -1);
        if (pa >= 0) {
            hits++;
            // The checker: compare with what the page tables translate the page to now.
            if (mm.translate(page) != pa) {
                staleUses++;
                machine.checkTranslation(name, mm, page, pa >>> 12, write);
            }
            return pa | (va & 0xFFF);
        }
        misses++;
        if (invalidationsInProgress > 0) {
            throw new IllegalStateException(name + ": an invalidation is in progress, retry the access");
        }
        long now = mm.translate(page);
        if (now < 0 || write) {
            mm.fault(va, write ? Access.WRITE : Access.READ); // the device's page request (PRI)
            now = mm.translate(page);
        }
        cache.put(page, now);
        return now | (va & 0xFFF);
    }

    private void drop(long start, long end) {
        if (!obeyNotifiers) {
            return;
        }
        cache.keySet().removeIf(page -> Long.compareUnsigned(page, start) >= 0 && Long.compareUnsigned(page, end) < 0);
    }

    @Override
    public synchronized void invalidateRangeStart(NotifierRange range) {
        received.add("start " + range.event() + String.format(" [0x%x, 0x%x)", range.start(), range.end()));
        invalidationsInProgress++;
        drop(range.start(), range.end());
    }

    @Override
    public synchronized void invalidateRangeEnd(NotifierRange range) {
        received.add("end   " + range.event() + String.format(" [0x%x, 0x%x)", range.start(), range.end()));
        invalidationsInProgress--;
    }

    @Override
    public synchronized void invalidateSecondaryTlbs(AddressSpace addressSpace, long start, long end) {
        received.add(String.format("flush [0x%x, 0x%x)", start, end));
        if (flushedWithCpu) {
            drop(start, end);
        }
    }

    @Override
    public synchronized void release(AddressSpace addressSpace) {
        received.add("release");
        cache.clear();
    }

    /** The notifier calls received so far, one line each. */
    public synchronized List<String> received() {
        return List.copyOf(received);
    }

    /** Translations cached now. */
    public synchronized int cached() {
        return cache.size();
    }

    /** Uses of a translation the page tables no longer held. */
    public synchronized long staleUses() {
        return staleUses;
    }

    public synchronized long hits() {
        return hits;
    }

    public synchronized long misses() {
        return misses;
    }
}
