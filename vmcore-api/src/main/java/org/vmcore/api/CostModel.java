package org.vmcore.api;

/**
 * Charges simulated cycles for the events of address translation and memory management, so a
 * simulator gets a cost per access and per CPU without timing the host. Set one per CPU with
 * {@link Cpu#costModel(CostModel)}; the CPU adds what it returns to {@link Cpu#cycles()} and to
 * each recorded {@link AccessOutcome#cycles()}.
 *
 * <p>The methods are called on the thread the event happens on, often inside an mm operation:
 * they must be quick, must not call back into the machine, should return cycles {@code >= 0}
 * (the CPU adds what they return as given) and should not throw. If one throws, nothing the
 * engine was doing stops: an access (or a whole batch, or the access whose fault was being
 * priced) completes and then throws it; an mm operation (a flush, a shootdown, a notifier call,
 * a page copy) completes and throws it when it ends, as it would a notifier's exception. Later
 * exceptions are suppressed into the first. {@link CostTable#DEFAULT} is a table of published
 * latencies for a recent x86 core.
 *
 * <p>Who is charged: an access's own events (hits, walk references, its faults) go to the CPU
 * making it; a flush and the shootdowns it sends go to the initiating CPU (see {@link Cpu});
 * a received shootdown to its target; notifier callbacks and page copies to the CPU on whose
 * behalf the operation runs (the initiator), and to none when the thread drives no CPU.
 */
public interface CostModel {
    /**
     * A translation found in the first-level data TLB.
     *
     * @param size the page size of the translation
     * @return cycles to charge
     */
    long l1Hit(PageSize size);

    /**
     * A translation found in the second-level TLB after a first-level miss.
     *
     * @param size the page size of the translation
     * @return cycles to charge
     */
    long stlbHit(PageSize size);

    /**
     * One memory reference of a page walk: the read (and any A/D update) of one entry.
     *
     * @param level the level of the entry read
     * @param physicalAddress the physical address of the entry, for a model that looks it up
     *                        in its own cache
     * @return cycles to charge
     */
    long walkReference(PageTableLevel level, long physicalAddress);

    /**
     * A page fault the kernel resolved: exception entry and exit and the handler's work,
     * without the page copies and flushes it made (charged separately).
     *
     * @param result how the fault was resolved
     * @param size the page size of the mapping faulted on
     * @return cycles to charge
     */
    long fault(FaultResult result, PageSize size);

    /**
     * A flush the CPU runs on its own TLB as initiator: of some pages (INVLPG each) or of the
     * whole address space or TLB.
     *
     * @param all whether the whole address space or TLB was flushed
     * @param pages the pages flushed one by one when not {@code all}
     * @return cycles to charge
     */
    long tlbFlush(boolean all, long pages);

    /**
     * A shootdown sent: the initiator's cost of interrupting {@code targets} CPUs and waiting
     * for them.
     *
     * @param targets the number of CPUs interrupted, at least 1
     * @return cycles to charge
     */
    long shootdownSent(int targets);

    /**
     * A shootdown received: the target's interrupt entry, flush and exit.
     *
     * @return cycles to charge
     */
    long shootdownReceived();

    /**
     * One MMU-notifier callback (a secondary MMU told of an invalidation).
     *
     * @return cycles to charge
     */
    long notifierCallback();

    /**
     * Copying page contents: a copy-on-write copy or a migration.
     *
     * @param bytes the bytes copied
     * @return cycles to charge
     */
    long pageCopy(long bytes);
}
