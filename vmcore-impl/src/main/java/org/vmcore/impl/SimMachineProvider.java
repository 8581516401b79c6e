package org.vmcore.impl;

import org.vmcore.api.Machine;
import org.vmcore.api.MachineConfig;
import org.vmcore.api.MachineProvider;

/** The ServiceLoader entry point of vmcore-impl. */
public final class SimMachineProvider implements MachineProvider {
    /** Used by ServiceLoader. */
    public SimMachineProvider() {
    }

    @Override
    public Machine create(MachineConfig config) {
        return new SimMachine(config);
    }
}
