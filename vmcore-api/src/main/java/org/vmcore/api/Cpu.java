package org.vmcore.api;

import java.util.List;
import java.util.function.Supplier;

/**
 * A simulated CPU: a current address space (CR3 with PCID), a TLB with paging-structure caches
 * and a hardware walker. Loads and stores go TLB, then walk (setting A, and D on a store), then
 * the kernel's fault handler, then retry; they read and write the frames' real contents.
 *
 * <p>A CPU is driven by one thread at a time, as a real CPU runs one instruction stream; several
 * CPUs may run on several threads. TLB shootdowns from other threads are synchronous: when a
 * flush returns, no access through a flushed entry is in progress or can start.
 *
 * <p>The initiating CPU of a TLB flush. An mm operation (munmap, mprotect, a copy-on-write fault,
 * migration, ...) that flushes runs on some CPU, as in the kernel: that CPU flushes its own TLB
 * (counted in {@code nr_tlb_local_flush_one/all}) and sends a shootdown to every other CPU of the
 * address space's cpumask (counted as sent on it, {@code nr_tlb_remote_flush}, and as received
 * on each target, {@code nr_tlb_remote_flush_received}). Inside {@link #run} or {@link #call}
 * the initiator is that CPU. Otherwise it is the CPU the calling thread last drove through
 * {@link #switchTo} or an access that faulted; a thread that has driven none initiates as no CPU,
 * and every CPU of the cpumask counts a received shootdown.
 */
public interface Cpu {
    /** The most accesses of a batch whose outcomes reach an {@link AccessListener} in one burst. */
    int OUTCOME_BURST = 64;

    /** The most page-walk references an {@link AccessOutcome} keeps for one access. */
    int OUTCOME_MAX_REFERENCES = 16;

    /**
     * The CPU number.
     *
     * @return the CPU number
     */
    int id();

    /**
     * Loads CR3 with {@code addressSpace}'s tables and PCID without flushing: entries of other
     * PCIDs stay cached. The CPU joins the address space's cpumask. {@code null} leaves the CPU
     * without a user address space.
     *
     * @param addressSpace the address space
     * @throws ClosedException if the address space has exited
     */
    void switchTo(AddressSpace addressSpace);

    /**
     * The current address space, or null.
     *
     * @return the current address space, or null
     */
    AddressSpace current();

    /**
     * Loads {@code width} (1, 2, 4 or 8) bytes, little-endian and zero-extended, from {@code va}
     * in user mode.
     *
     * @param va the virtual address
     * @param width the access width in bytes: 1, 2, 4 or 8
     * @return the value loaded
     * @throws SegmentationFaultException if the access faults and the kernel cannot resolve it
     * @throws InvalidArgumentException   if the width is not 1, 2, 4 or 8
     * @throws IllegalStateException      if the CPU has no current address space
     */
    long load(long va, int width);

    /**
     * Stores the low {@code width} bytes of {@code value} at {@code va}; see {@link #load}. A store
     * that crosses into a page it may not write faults before any byte lands (x86 stores are
     * precise).
     *
     * @param va the virtual address
     * @param width the access width in bytes: 1, 2, 4 or 8
     * @param value the value to store
     */
    void store(long va, int width, long value);

    /**
     * Reads {@code length} bytes from {@code va} into {@code dst} from {@code offset}.
     *
     * <p>The bytes are copied a page at a time, as a string instruction moves them: each page is
     * translated once (faulting in as {@link #load} does), so a long read costs about one access
     * per page. A fault that cannot be resolved stops the copy; the bytes before it are filled.
     *
     * @param va the virtual address
     * @param dst the buffer to fill
     * @param offset the first index of {@code dst} to fill
     * @param length the length in bytes
     * @throws SegmentationFaultException if a page of the range faults and the kernel cannot resolve it
     * @throws InvalidArgumentException   if {@code dst} is null or the range leaves it
     */
    void read(long va, byte[] dst, int offset, int length);

    /**
     * Writes {@code length} bytes of {@code src} from {@code offset} to {@code va}.
     *
     * <p>Precise, as an x86 store: every page of the range is translated for write (and faulted
     * in where the kernel can) before the first byte is written, so a fault that cannot be
     * resolved writes nothing.
     *
     * @param va the virtual address
     * @param src the bytes to write
     * @param offset the first index of {@code src} to write
     * @param length the length in bytes
     * @throws SegmentationFaultException if a page of the range faults and the kernel cannot resolve it
     * @throws InvalidArgumentException   if {@code src} is null or the range leaves it
     */
    void write(long va, byte[] src, int offset, int length);

    /**
     * Loads {@code width} bytes from each address of {@code vas} into the same index of
     * {@code values}, in order: the same as a loop of {@link #load}, but faster, because the
     * handshake that keeps accesses and TLB shootdowns apart is entered once for the batch instead
     * of once per access. A shootdown from another thread still gets through between any two
     * accesses of the batch. This is the call for replaying a trace.
     *
     * <p>If an access faults and the kernel cannot resolve it, the exception is thrown and the
     * accesses before it have taken effect; {@code values} holds their results, and
     * {@link SegmentationFaultException#batchIndex()} names the access that faulted.
     *
     * @param vas the virtual addresses, in access order
     * @param width the access width in bytes: 1, 2, 4 or 8
     * @param values receives the loaded values; as long as {@code vas}
     * @throws SegmentationFaultException if an access faults and the kernel cannot resolve it
     * @throws InvalidArgumentException   if an array is null, the lengths differ, or the width is not 1, 2, 4 or 8
     * @throws IllegalStateException      if the CPU has no current address space
     */
    void loadAll(long[] vas, int width, long[] values);

    /**
     * Stores the low {@code width} bytes of each of {@code values} at the address of the same
     * index of {@code vas}, in order; the batched form of {@link #store}, see {@link #loadAll}.
     *
     * @param vas the virtual addresses, in access order
     * @param width the access width in bytes: 1, 2, 4 or 8
     * @param values the values to store; as long as {@code vas}
     * @throws SegmentationFaultException if an access faults and the kernel cannot resolve it
     * @throws InvalidArgumentException   if an array is null, the lengths differ, or the width is not 1, 2, 4 or 8
     * @throws IllegalStateException      if the CPU has no current address space
     */
    void storeAll(long[] vas, int width, long[] values);

    /**
     * Replays a mixed trace: access {@code i} is {@code ops[i]} ({@link TraceOp#LOAD},
     * {@link TraceOp#STORE} or {@link TraceOp#FETCH}) of {@code widths[i]} bytes (1, 2, 4 or 8)
     * at {@code vas[i]}; a store writes {@code values[i]}, a load or fetch puts what it read
     * there. Accesses run in order inside the batch handshake of {@link #loadAll}, so an
     * interleaved trace needs no splitting. Fetches go through the same TLB with NX checked.
     *
     * <p>The arrays are checked before anything runs. If an access faults and the kernel cannot
     * resolve it, the accesses before it have taken effect and the exception's
     * {@link SegmentationFaultException#batchIndex()} names it.
     *
     * @param ops the operations, {@link TraceOp} values
     * @param vas the virtual addresses
     * @param widths the access widths in bytes
     * @param values store values in, load and fetch results out
     * @throws SegmentationFaultException if an access faults and the kernel cannot resolve it
     * @throws InvalidArgumentException   if an array is null, the lengths differ, or an operation or width is invalid
     * @throws IllegalStateException      if the CPU has no current address space
     */
    void replay(byte[] ops, long[] vas, byte[] widths, long[] values);

    /**
     * {@link #load} that records how the access went in {@link #outcome()}: TLB level, walk
     * references, faults, shootdowns waited for and cycles charged. Slower than {@link #load}.
     *
     * @param va the virtual address
     * @param width the access width in bytes: 1, 2, 4 or 8
     * @return the value loaded
     * @throws SegmentationFaultException if the access faults and the kernel cannot resolve it
     * @throws InvalidArgumentException   if the width is not 1, 2, 4 or 8
     */
    long loadRecorded(long va, int width);

    /**
     * {@link #store} that records how the access went in {@link #outcome()}.
     *
     * @param va the virtual address
     * @param width the access width in bytes: 1, 2, 4 or 8
     * @param value the value to store
     * @throws SegmentationFaultException if the access faults and the kernel cannot resolve it
     * @throws InvalidArgumentException   if the width is not 1, 2, 4 or 8
     */
    void storeRecorded(long va, int width, long value);

    /**
     * This CPU's outcome of its last {@link #loadRecorded} or {@link #storeRecorded}: one
     * object, reused by every recorded access. A page-crossing access records its last part.
     *
     * @return the CPU's reusable outcome
     */
    AccessOutcome outcome();

    /**
     * Sets the listener that hears the outcome of every access of this CPU's batches
     * ({@link #loadAll}, {@link #storeAll}, {@link #replay}); null removes it. Without one,
     * batches record nothing and run at full speed. Set it from the thread that drives the CPU.
     *
     * @param listener the listener, or null
     */
    void accessListener(AccessListener listener);

    /**
     * Sets the cost model that charges this CPU's cycles; null (the default) charges none.
     * Set it from the thread that drives the CPU.
     *
     * @param model the cost model, or null
     */
    void costModel(CostModel model);

    /**
     * The simulated cycles charged to this CPU since it started or since {@link #resetCycles}.
     *
     * @return the cycles charged
     */
    long cycles();

    /** Sets {@link #cycles()} back to 0. */
    void resetCycles();

    /**
     * Runs {@code action} on the calling thread as this CPU: every TLB flush it causes is
     * initiated by this CPU (see the class comment), however the thread drove CPUs before. Calls
     * nest; the innermost CPU wins, and when {@code action} returns or throws the previous
     * initiator is restored. An access by another CPU inside {@code action} makes that CPU the
     * thread's initiator from then on, until this call ends.
     *
     * @param action the work to run as this CPU
     * @throws InvalidArgumentException if {@code action} is null
     */
    void run(Runnable action);

    /**
     * Runs {@code action} as this CPU, like {@link #run}, and returns its result; whatever it
     * throws reaches the caller with the previous initiator restored.
     *
     * @param action the work to run as this CPU
     * @param <T> the result type
     * @return what {@code action} returned
     * @throws InvalidArgumentException if {@code action} is null
     */
    <T> T call(Supplier<T> action);

    /**
     * The TLB counters.
     *
     * @return the TLB counters
     */
    TlbStats stats();

    /**
     * The translations cached right now, every PCID.
     *
     * @return the translations cached right now, every PCID
     */
    List<TlbEntry> tlbEntries();

    /**
     * Whether a translation for {@code va} of {@code addressSpace} is cached.
     *
     * @param addressSpace the address space
     * @param va the virtual address
     * @return whether a translation for {@code va} of {@code addressSpace} is cached
     */
    boolean tlbHolds(AddressSpace addressSpace, long va);
}
