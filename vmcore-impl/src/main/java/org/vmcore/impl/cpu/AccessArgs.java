package org.vmcore.impl.cpu;

import org.vmcore.api.InvalidArgumentException;

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
