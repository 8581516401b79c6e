package org.vmcore.impl;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Mapping;
import org.vmcore.api.RmapWalker;
import org.vmcore.api.UnmapResult;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.base.OperationHook;
import org.vmcore.impl.migrate.RemoveMigrationPtes;
import org.vmcore.impl.notifier.CallbackFailures;
import org.vmcore.impl.rmap.RmapWalk;
import org.vmcore.impl.rmap.TryToUnmap;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.mem.FrameDescriptors;

/**
 * The public {@link RmapWalker}: locks, checks, and hands each call to the mechanism that does
 * it (the walk to {@link RmapWalk}, try_to_unmap and try_to_migrate to {@link TryToUnmap},
 * remove_migration_ptes to {@link RemoveMigrationPtes}). It lives at the root because it joins
 * rmap and migrate, which must not depend on each other that way round.
 */
@SuppressWarnings("try") // a lock hold is used only for its scope
final class RmapWalkerImpl implements RmapWalker {
    private final MachineLock lock;
    private final CallbackFailures failures;
    private final OperationHook hook;
    private final FrameDescriptors descriptors;
    private final RmapWalk rmap;
    private final TryToUnmap unmap;
    private final RemoveMigrationPtes removeMigrationPtes;

    RmapWalkerImpl(MachineLock lock, CallbackFailures failures, OperationHook hook, FrameDescriptors descriptors, RmapWalk rmap, TryToUnmap unmap,
                   RemoveMigrationPtes removeMigrationPtes) {
        this.lock = lock;
        this.failures = failures;
        this.hook = hook;
        this.descriptors = descriptors;
        this.rmap = rmap;
        this.unmap = unmap;
        this.removeMigrationPtes = removeMigrationPtes;
    }

    @Override
    public UnmapResult tryToUnmap(long pfn) {
        try (MachineLock.Held locked = lock.exclusive()) {
            lock.ensureOpen();
            return completed(() -> unmap.tryToUnmap(pfn));
        }
    }

    @Override
    public UnmapResult tryToMigrate(long pfn) {
        try (MachineLock.Held locked = lock.exclusive()) {
            lock.ensureOpen();
            return completed(() -> unmap.tryToMigrate(pfn));
        }
    }

    /**
     * Runs a walk that calls notifiers, then rethrows what they threw: the mappings already
     * handled stay handled (every range opened was closed), as a partial try_to_unmap leaves them.
     */
    private UnmapResult completed(Supplier<UnmapResult> walk) {
        UnmapResult result;
        try {
            result = walk.get();
        } catch (Throwable e) {
            throw hook.operationFailed(e);
        }
        hook.operationDone();
        return result;
    }

    @Override
    public int removeMigrationEntries(long oldPfn, long newPfn) {
        try (MachineLock.Held locked = lock.exclusive()) {
            lock.ensureOpen();
            return removeMigrationPtes.removeMigrationEntries(oldPfn, newPfn);
        }
    }

    @Override
    public int walk(long pfn, Visitor visitor) {
        try (MachineLock.Held locked = lock.exclusive()) {
            lock.ensureOpen();
            if (visitor == null) {
                throw new InvalidArgumentException("visitor", null, "must not be null");
            }
            int visited;
            failures.enter();
            try {
                visited = rmap.walkVmas(pfn, (vma, address) -> visitor.visit(vma.owner(), address));
            } catch (Throwable e) {
                failures.exit();
                throw hook.operationFailed(e);
            }
            failures.exit();
            hook.operationDone(); // a close the visitor asked for happens now
            return visited;
        }
    }

    @Override
    public List<Mapping> mappings(long pfn) {
        try (MachineLock.Held locked = lock.exclusive()) {
            lock.ensureOpen();
            List<Mapping> out = new ArrayList<>();
            long index = descriptors.index(pfn);
            for (VmArea vma : rmap.candidates(pfn)) {
                long address = vma.address(index);
                if (address >= 0 && vma.owner().pageAt(address) == pfn) {
                    out.add(new Mapping(vma.owner(), address));
                }
            }
            return out;
        }
    }
}
