package org.vmcore.impl.hostile;

import java.time.Duration;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.ClosedException;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.SegmentationFaultException;

/** What the hostile tests of transparent huge pages share: their addresses, data pattern and helpers. */
final class ThpHostile {
    static final long K4 = 4096;
    static final long MIB = 1L << 20;
    static final long H = 2 * MIB;
    static final long VA = 0x40_0000_0000L;
    static final long OTHER = 0x50_0000_0000L;
    static final int PRIV = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;
    static final int MOVE = MapFlags.MREMAP_MAYMOVE | MapFlags.MREMAP_FIXED;
    static final Duration WAIT = Duration.ofSeconds(20);

    private ThpHostile() {
    }

    /** The word a test writes at {@code va}: never 0, so a zero-filled page shows. */
    static long value(long va) {
        return (va * 0x9E3779B97F4A7C15L) | 1;
    }

    /** Writes value(va) at the start of each 4 KiB page of [va, va + len). */
    static void fill(Cpu cpu, AddressSpace mm, long va, long len) {
        cpu.switchTo(mm);
        for (long off = 0; off < len; off += K4) {
            cpu.store(va + off, 8, value(va + off));
        }
    }

    /** The value at {@code at}, or -1 when the access faults. */
    static long read(Cpu cpu, AddressSpace mm, long at) {
        cpu.switchTo(mm);
        try {
            return cpu.load(at, 8);
        } catch (SegmentationFaultException e) {
            return -1;
        }
    }

    /** Whether the store at {@code at} went in (false when it faults). */
    static boolean writes(Cpu cpu, AddressSpace mm, long at, long v) {
        cpu.switchTo(mm);
        try {
            cpu.store(at, 8, v);
            return true;
        } catch (SegmentationFaultException e) {
            return false;
        }
    }

    /** Whether the machine is still open. */
    static boolean isOpen(Machine m) {
        try {
            m.addressSpaces();
            return true;
        } catch (ClosedException e) {
            return false;
        }
    }

    /** The throwable and the top of its stack, for a failure message. */
    static String trace(Throwable t) {
        StringBuilder sb = new StringBuilder(String.valueOf(t));
        StackTraceElement[] st = t.getStackTrace();
        for (int i = 0; i < Math.min(10, st.length); i++) {
            sb.append("\n    at ").append(st[i]);
        }
        return sb.toString();
    }
}
