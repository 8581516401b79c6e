package org.vmcore.api;

import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * An immutable copy of every {@link VmstatCounter} at one moment ({@link Machine#vmstatSnapshot()}),
 * or the difference of two such copies ({@link #minus}): what happened in an interval.
 *
 * <pre>{@code
 * VmstatSnapshot before = machine.vmstatSnapshot();
 * runWorkload();
 * VmstatSnapshot interval = machine.vmstatSnapshot().minus(before);
 * interval.get(VmstatCounter.PGFAULT);
 * }</pre>
 */
public final class VmstatSnapshot {
    private static final VmstatCounter[] COUNTERS = VmstatCounter.values();

    private final long[] values;

    private VmstatSnapshot(long[] values) {
        this.values = values;
    }

    /**
     * A snapshot holding {@code values}; a counter missing from the map is 0.
     *
     * @param values counter values, none negative
     * @return a snapshot holding {@code values}
     * @throws InvalidArgumentException if the map, a key or a value is null, or a value is negative
     */
    public static VmstatSnapshot of(Map<VmstatCounter, Long> values) {
        if (values == null) {
            throw new InvalidArgumentException("values", null, "must not be null");
        }
        long[] copy = new long[COUNTERS.length];
        for (Map.Entry<VmstatCounter, Long> e : values.entrySet()) {
            if (e.getKey() == null || e.getValue() == null) {
                throw new InvalidArgumentException("values", values, "must not hold null keys or values");
            }
            if (e.getValue() < 0) {
                throw new InvalidArgumentException(e.getKey().procName(), e.getValue(), "must not be negative");
            }
            copy[e.getKey().ordinal()] = e.getValue();
        }
        return new VmstatSnapshot(copy);
    }

    /**
     * The value of {@code counter}.
     *
     * @param counter the vmstat counter to read
     * @return its value: a count since the machine started or was last reset, or over an interval
     * @throws InvalidArgumentException if counter is null
     */
    public long get(VmstatCounter counter) {
        if (counter == null) {
            throw new InvalidArgumentException("counter", null, "must not be null");
        }
        return values[counter.ordinal()];
    }

    /**
     * What happened between {@code earlier} and this snapshot: each counter's value here minus
     * its value there.
     *
     * @param earlier a snapshot of the same machine taken before this one, with no
     *                {@link Machine#resetVmstat()} in between
     * @return the difference, counter by counter
     * @throws InvalidArgumentException if earlier is null or any of its counters is above this
     *                                  one's (it was taken later, or a reset came in between)
     */
    public VmstatSnapshot minus(VmstatSnapshot earlier) {
        if (earlier == null) {
            throw new InvalidArgumentException("earlier", null, "must not be null");
        }
        long[] diff = new long[COUNTERS.length];
        for (int i = 0; i < diff.length; i++) {
            diff[i] = values[i] - earlier.values[i];
            if (diff[i] < 0) {
                throw new InvalidArgumentException("earlier", earlier, "must be taken before this snapshot with no reset in"
                        + " between, but its " + COUNTERS[i].procName() + " " + earlier.values[i] + " is above " + values[i]);
            }
        }
        return new VmstatSnapshot(diff);
    }

    /**
     * The counters by their /proc/vmstat names, in {@link VmstatCounter} order.
     *
     * @return an unmodifiable map from {@link VmstatCounter#procName()} to value
     */
    public Map<String, Long> asMap() {
        Map<String, Long> out = new LinkedHashMap<>();
        for (VmstatCounter c : COUNTERS) {
            out.put(c.procName(), values[c.ordinal()]);
        }
        return Collections.unmodifiableMap(out);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof VmstatSnapshot s && Arrays.equals(values, s.values);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(values);
    }

    /** The counters as /proc/vmstat prints them, on one line: {@code pgfault 16, pgmigrate_success 0, ...}. */
    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder("vmstat[");
        for (VmstatCounter c : COUNTERS) {
            sb.append(c.ordinal() == 0 ? "" : ", ").append(c.procName()).append(' ').append(values[c.ordinal()]);
        }
        return sb.append(']').toString();
    }
}
