package org.vmcore.api;

/** The Linux errno values that migration calls report, as positive constants (use them negated, as the kernel does). */
public final class Errno {
    /** No such file or directory: the page is not present. */
    public static final int ENOENT = 2;
    /** Out of memory: no page on the target node. */
    public static final int ENOMEM = 12;
    /** Permission denied: the page is mapped by several processes and MOVE_ALL is not given. */
    public static final int EACCES = 13;
    /** Bad address: no VMA, or a page that cannot be migrated. */
    public static final int EFAULT = 14;
    /** Device or resource busy. */
    public static final int EBUSY = 16;
    /** No such device: a node that does not exist. */
    public static final int ENODEV = 19;
    /** Invalid argument. */
    public static final int EINVAL = 22;
    /** Try again: the page could not be unmapped or was referenced. */
    public static final int EAGAIN = 11;

    private Errno() {
    }

    /**
     * The symbolic name of {@code -errno} or {@code errno}, e.g. "-EACCES"; a node number is returned as it is.
     *
     * @param status a node number or a negated errno
     * @return the symbolic name, or the node number as it is
     */
    public static String describe(int status) {
        if (status >= 0) {
            return Integer.toString(status);
        }
        return switch (-status) {
            case ENOENT -> "-ENOENT";
            case ENOMEM -> "-ENOMEM";
            case EACCES -> "-EACCES";
            case EFAULT -> "-EFAULT";
            case EBUSY -> "-EBUSY";
            case ENODEV -> "-ENODEV";
            case EINVAL -> "-EINVAL";
            case EAGAIN -> "-EAGAIN";
            default -> Integer.toString(status);
        };
    }
}
