package org.vmcore.impl.base;

/**
 * The CPU on whose behalf a thread runs mm work: the one it last drove (switchTo, an access
 * that faulted) or runs as inside {@code Cpu.run}. It initiates that work's TLB flushes and is
 * charged the cycles of the kernel work the cost model prices (notifier callbacks, page copies).
 * Lower layers see only this much of a CPU.
 */
public interface Initiator {
    /** The CPU the current thread drives, or none. */
    ThreadLocal<Initiator> DRIVEN = new ThreadLocal<>();

    /** The CPU number. */
    int id();

    /** One MMU-notifier callback ran on this CPU's behalf. */
    void chargeNotifierCall();

    /** Page contents were copied on this CPU's behalf (copy-on-write or migration). */
    void chargePageCopy(long bytes);

    /** Charges the current thread's initiator, if any, for one notifier callback. */
    static void notifierCall() {
        Initiator cpu = DRIVEN.get();
        if (cpu != null) {
            cpu.chargeNotifierCall();
        }
    }

    /** Charges the current thread's initiator, if any, for copying {@code bytes}. */
    static void pageCopy(long bytes) {
        Initiator cpu = DRIVEN.get();
        if (cpu != null) {
            cpu.chargePageCopy(bytes);
        }
    }
}
