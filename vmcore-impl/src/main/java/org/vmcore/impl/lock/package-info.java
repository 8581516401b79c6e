/**
 * The kernel's sleeping and spinning locks as the engine takes them ({@link
 * org.vmcore.impl.lock.RwSem}, {@link org.vmcore.impl.lock.KMutex}), each keyed by a
 * {@link org.vmcore.impl.lock.LockClass}, and {@link org.vmcore.impl.lock.LockDep}, a validator of
 * the order they are taken in, after Linux's lockdep. Tests run with {@code -Dvmcore.lockdep=true};
 * without it the wrappers are plain {@code java.util.concurrent} locks.
 *
 * <p>This package depends on no other vmcore package, so every layer may use it.
 */
package org.vmcore.impl.lock;
