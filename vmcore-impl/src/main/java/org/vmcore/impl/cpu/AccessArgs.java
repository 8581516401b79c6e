package org.vmcore.impl.cpu;

import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.TraceOp;

/** The argument checks of a CPU's public accesses: a bad call throws before it touches anything. */
final class AccessArgs {
    private AccessArgs() {
    }

    static void checkWidth(int width) {
        if (width != 1 && width != 2 && width != 4 && width != 8) {
            throw new InvalidArgumentException("width", width, "must be 1, 2, 4 or 8 bytes");
        }
    }

    static void checkBatch(long[] vas, int width, long[] values) {
        if (vas == null) {
            throw new InvalidArgumentException("vas", null, "must not be null");
        }
        if (values == null) {
            throw new InvalidArgumentException("values", null, "must not be null");
        }
        if (values.length != vas.length) {
            throw new InvalidArgumentException("values.length", values.length, "must equal vas.length " + vas.length);
        }
        checkWidth(width);
    }

    /** The arrays of a mixed trace: all there, all as long as {@code vas}, every operation and width valid. */
    static void checkTrace(byte[] ops, long[] vas, byte[] widths, long[] values) {
        if (ops == null) {
            throw new InvalidArgumentException("ops", null, "must not be null");
        }
        if (widths == null) {
            throw new InvalidArgumentException("widths", null, "must not be null");
        }
        checkBatch(vas, 1, values);
        if (ops.length != vas.length) {
            throw new InvalidArgumentException("ops.length", ops.length, "must equal vas.length " + vas.length);
        }
        if (widths.length != vas.length) {
            throw new InvalidArgumentException("widths.length", widths.length, "must equal vas.length " + vas.length);
        }
        for (int i = 0; i < ops.length; i++) {
            if (ops[i] < TraceOp.LOAD || ops[i] > TraceOp.FETCH) {
                throw new InvalidArgumentException("ops[" + i + "]", ops[i], "must be TraceOp.LOAD (0), STORE (1) or FETCH (2)");
            }
            int w = widths[i];
            if (w != 1 && w != 2 && w != 4 && w != 8) {
                throw new InvalidArgumentException("widths[" + i + "]", w, "must be 1, 2, 4 or 8 bytes");
            }
        }
    }

    static void checkBuffer(byte[] buffer, int offset, int length) {
        if (buffer == null) {
            throw new InvalidArgumentException("buffer", null, "must not be null");
        }
        if (offset < 0 || length < 0 || offset > buffer.length - length) {
            throw new InvalidArgumentException("offset", offset, "must leave " + length + " bytes inside a buffer of "
                    + buffer.length);
        }
    }
}
