package org.vmcore.impl;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Predicate;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.mm.MmContext;
import org.vmcore.impl.mm.SimAddressSpace;

/**
 * The machine's live address spaces and their PCIDs (the arch's ASID allocator): a new address
 * space takes the lowest free PCID of 1..4095, an exited one gives it back. It also keeps the
 * faults of exited address spaces for pgfault, and passes on an address space's request to
 * defer its close to the machine's end of operation. Callers hold the machine lock; its own
 * monitor guards it, since address spaces are created and exit in parallel.
 */
final class AddressSpaceTable implements MmContext.MmLifecycle {
    private final SimAddressSpace[] byPcid = new SimAddressSpace[4096];
    private final List<SimAddressSpace> spaces = new ArrayList<>();
    private final MachineLock lock;
    private final Predicate<SimAddressSpace> deferClose;
    private MmContext ctx;
    private int nextSpaceId = 1;
    private long exitedFaults;

    /** @param deferClose whether a close asked for now must wait for the operation below (and queues it) */
    AddressSpaceTable(MachineLock lock, Predicate<SimAddressSpace> deferClose) {
        this.lock = lock;
        this.deferClose = deferClose;
    }

    /** The context the address spaces get. */
    MmContext context() {
        return ctx;
    }

    /** Set once, when the machine has built the context the address spaces get. */
    void setContext(MmContext ctx) {
        this.ctx = ctx;
    }

    @Override
    public synchronized SimAddressSpace newChild(int homeNode) {
        assert lock.isHeldByCurrentThread();
        int pcid = 1;
        while (pcid < byPcid.length && byPcid[pcid] != null) {
            pcid++;
        }
        if (pcid == byPcid.length) {
            throw new OutOfMemoryException("all 4095 PCIDs are in use: close an address space first");
        }
        SimAddressSpace mm = new SimAddressSpace(ctx, nextSpaceId++, homeNode, pcid);
        byPcid[pcid] = mm;
        spaces.add(mm);
        return mm;
    }

    @Override
    public synchronized void exited(SimAddressSpace mm) {
        assert lock.isHeldByCurrentThread();
        exitedFaults += mm.faultCount();
        spaces.remove(mm);
        byPcid[mm.pcid()] = null;
    }

    @Override
    public boolean deferClose(SimAddressSpace mm) {
        return deferClose.test(mm);
    }

    /** The live address space tagged with {@code pcid}, or null. */
    synchronized AddressSpace ofPcid(int pcid) {
        return pcid > 0 && pcid < byPcid.length ? byPcid[pcid] : null;
    }

    /** The live address spaces, in creation order (a copy). */
    synchronized List<SimAddressSpace> live() {
        assert lock.isHeldByCurrentThread();
        return new ArrayList<>(spaces);
    }

    /** pgfault: the faults of every address space, live or exited. */
    synchronized long faults() {
        assert lock.isHeldByCurrentThread();
        long faults = exitedFaults;
        for (SimAddressSpace mm : spaces) {
            faults += mm.faultCount();
        }
        return faults;
    }
}
