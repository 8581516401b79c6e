package org.vmcore.api;

/**
 * The service that builds machines; vmcore-impl provides it. {@link Machine.Builder#build()}
 * finds it with {@link java.util.ServiceLoader}.
 */
public interface MachineProvider {
    /**
     * A new machine of {@code config}, which the builder has already validated.
     *
     * @param config the validated configuration of the machine to build
     * @return a new machine of {@code config}, which the builder has already validated
     */
    Machine create(MachineConfig config);
}
