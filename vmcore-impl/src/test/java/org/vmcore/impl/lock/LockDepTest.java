package org.vmcore.impl.lock;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatCode;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.assertj.core.api.InstanceOfAssertFactories;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInfo;

/**
 * The lock-order validator and the lock wrappers. Each test learns a graph of its own (reset
 * before it, class names prefixed with the test's name) and leaves the thread holding nothing.
 * Runs only with {@code -Dvmcore.lockdep=true}, as the module's surefire configuration sets it.
 */
class LockDepTest {
    private String prefix;

    @BeforeEach
    void reset(TestInfo test) {
        assumeTrue(LockDep.ENABLED, "run with -Dvmcore.lockdep=true");
        LockDep.resetForTests();
        prefix = test.getTestMethod().orElseThrow().getName() + ".";
    }

    @AfterEach
    void holdsNothing() {
        assertThat(LockDep.held()).isEmpty();
    }

    private LockClass cls(String name) {
        return LockClass.of(prefix + name);
    }

    private RwSem rwsem(String name) {
        return new RwSem(cls(name));
    }

    private KMutex mutex(String name) {
        return new KMutex(cls(name));
    }

    /** Takes first then second, each for write, and releases both: the order is learned. */
    private static void inOrder(RwSem first, RwSem second) {
        first.downWrite();
        second.downWrite();
        second.upWrite();
        first.upWrite();
    }

    // --- LockClass ---------------------------------------------------------------------------

    @Test
    void aLockClassPrintsAsTheKernelDoes() {
        LockClass mmap = LockClass.of("mmap_lock");
        assertThat(mmap).hasToString("mmap_lock");
        assertThat(mmap.nested(1)).hasToString("mmap_lock/1").isEqualTo(new LockClass("mmap_lock", 1));
        assertThat(mmap.nested(1).nested(0)).isEqualTo(mmap);
        assertThatThrownBy(() -> new LockClass("mmap_lock", -1)).isInstanceOf(IllegalArgumentException.class);
    }

    // --- inversions --------------------------------------------------------------------------

    @Test
    void theReverseOfALearnedOrderOnOneThreadIsAnInversionNamingBothOrders() {
        RwSem mmap = rwsem("mmap_lock");
        RwSem immap = rwsem("i_mmap_rwsem");
        inOrder(mmap, immap);

        immap.downRead();
        try {
            assertThatThrownBy(mmap::downRead)
                    .isInstanceOf(LockOrderViolation.class)
                    .isInstanceOf(AssertionError.class)
                    .hasMessageStartingWith("lock-order inversion: taking " + mmap.lockClass()
                            + " while holding " + immap.lockClass())
                    .hasMessageContaining(mmap.lockClass() + " -> " + immap.lockClass()
                            + " was seen before (first at " + LockDepTest.class.getName() + ".inOrder(")
                    .hasMessageContaining("holds [" + immap.lockClass() + "]");
            assertThat(mmap.isLocked()).as("the violation is thrown before the lock is taken").isFalse();
            assertThat(LockDep.held()).containsExactly(immap.lockClass());
        } finally {
            immap.upRead();
        }
    }

    @Test
    void aReportIsKeptEvenWhenTheViolationIsCaught() {
        KMutex a = mutex("a");
        KMutex b = mutex("b");
        a.lock();
        b.lock();
        a.unlock();
        b.unlock();

        b.lock();
        try {
            a.lock();
            a.unlock();
        } catch (LockOrderViolation caught) {
            // engine code swallowing it
        } finally {
            b.unlock();
        }

        assertThat(LockDep.reports()).singleElement(InstanceOfAssertFactories.STRING)
                .startsWith("lock-order inversion: taking " + a.lockClass() + " while holding " + b.lockClass());
    }

    @Test
    void anInversionThroughAThirdClassIsFound() {
        RwSem a = rwsem("a");
        RwSem b = rwsem("b");
        RwSem c = rwsem("c");
        inOrder(a, b);
        inOrder(b, c);

        c.downWrite();
        try {
            assertThatThrownBy(a::downWrite)
                    .isInstanceOf(LockOrderViolation.class)
                    .hasMessageContaining("taking " + a.lockClass() + " while holding " + c.lockClass())
                    .hasMessageContaining(a.lockClass() + " -> " + b.lockClass() + " -> " + c.lockClass()
                            + " was seen before")
                    .hasMessageContaining(a.lockClass() + " -> " + b.lockClass() + " first at ")
                    .hasMessageContaining(b.lockClass() + " -> " + c.lockClass() + " first at ");
        } finally {
            c.upWrite();
        }
    }

    @Test
    void theOrderIsLearnedAcrossThreads() throws InterruptedException {
        KMutex a = mutex("a");
        KMutex b = mutex("b");
        AtomicReference<Throwable> first = new AtomicReference<>();
        AtomicReference<Throwable> second = new AtomicReference<>();

        Thread t1 = new Thread(() -> {
            try {
                a.lock();
                b.lock();
                b.unlock();
                a.unlock();
            } catch (Throwable t) {
                first.set(t);
            }
        }, "first");
        t1.start();
        t1.join();
        Thread t2 = new Thread(() -> {
            b.lock();
            try {
                a.lock();
                a.unlock();
            } catch (Throwable t) {
                second.set(t);
            } finally {
                b.unlock();
            }
        }, "second");
        t2.start();
        t2.join();

        assertThat(first.get()).isNull();
        assertThat(second.get()).isInstanceOf(LockOrderViolation.class)
                .hasMessageContaining("taking " + a.lockClass() + " while holding " + b.lockClass())
                .hasMessageContaining("thread second holds [" + b.lockClass() + "]");
        assertThat(LockDep.reports()).hasSize(1);
    }

    @Test
    void theSameOrderAgainIsNoViolation() {
        RwSem a = rwsem("a");
        RwSem b = rwsem("b");
        inOrder(a, b);
        assertThatCode(() -> inOrder(a, b)).doesNotThrowAnyException();
        assertThat(LockDep.reports()).isEmpty();
    }

    // --- trylock -----------------------------------------------------------------------------

    @Test
    void aTrylockAddsNoEdge() {
        KMutex a = mutex("a");
        KMutex b = mutex("b");
        b.lock();
        assertThat(a.tryLock()).isTrue();
        assertThat(LockDep.held()).containsExactly(b.lockClass(), a.lockClass());
        a.unlock();
        b.unlock();

        assertThatCode(() -> {
            a.lock();
            b.lock();
            b.unlock();
            a.unlock();
        }).doesNotThrowAnyException();
        assertThat(LockDep.reports()).isEmpty();
    }

    @Test
    void aLockTakenByTrylockOrdersTheLocksTakenInsideIt() {
        RwSem a = rwsem("a");
        RwSem b = rwsem("b");
        assertThat(a.tryDownWrite()).isTrue();
        b.downRead();
        b.upRead();
        a.upWrite();

        b.downRead();
        try {
            assertThatThrownBy(a::downRead).isInstanceOf(LockOrderViolation.class);
        } finally {
            b.upRead();
        }
    }

    @Test
    void aFailedTrylockRecordsNothing() throws InterruptedException {
        KMutex m = mutex("m");
        CountDownLatch taken = new CountDownLatch(1);
        CountDownLatch done = new CountDownLatch(1);
        Thread holder = new Thread(() -> {
            m.lock();
            try {
                taken.countDown();
                done.await(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } finally {
                m.unlock();
            }
        });
        holder.start();
        try {
            assertThat(taken.await(10, TimeUnit.SECONDS)).isTrue();
            assertThat(m.tryLock()).isFalse();
            assertThat(LockDep.held()).isEmpty();
        } finally {
            done.countDown();
            holder.join();
        }
    }

    // --- reentry, recursion, nesting ---------------------------------------------------------

    @Test
    void reenteringTheSameInstanceIsAllowedAndCountsDepth() {
        KMutex m = mutex("m");
        KMutex inner = mutex("inner");
        m.lock();
        inner.lock();
        m.lock();
        assertThat(LockDep.held()).containsExactly(m.lockClass(), inner.lockClass());
        m.unlock();
        inner.unlock();
        assertThat(LockDep.held()).containsExactly(m.lockClass());
        m.unlock();
        assertThat(LockDep.reports()).isEmpty();
    }

    @Test
    void readingAnRwsemTheThreadHoldsForWriteIsReentry() {
        RwSem sem = rwsem("sem");
        sem.downWrite();
        sem.downRead();
        assertThat(sem.isWriteLockedByCurrentThread()).isTrue();
        assertThat(sem.isReadLockedByCurrentThread()).isTrue();
        assertThat(LockDep.held()).containsExactly(sem.lockClass());
        sem.upRead();
        sem.upWrite();
        assertThat(sem.isLocked()).isFalse();
    }

    @Test
    void aSecondInstanceOfAHeldClassIsRecursiveLocking() {
        LockClass ptl = cls("ptl");
        KMutex one = new KMutex(ptl);
        KMutex two = new KMutex(ptl);
        one.lock();
        try {
            assertThatThrownBy(two::lock)
                    .isInstanceOf(LockOrderViolation.class)
                    .hasMessageStartingWith("possible recursive locking detected: taking " + ptl);
            assertThat(two.isLocked()).isFalse();
        } finally {
            one.unlock();
        }
        assertThat(LockDep.reports()).hasSize(1);
    }

    @Test
    void aSecondInstanceTakenNestedIsAllowed() {
        LockClass mmap = cls("mmap_lock");
        RwSem outer = new RwSem(mmap);
        RwSem inner = new RwSem(mmap);
        outer.downWrite();
        inner.downWriteNested(1);
        assertThat(LockDep.held()).containsExactly(mmap, mmap.nested(1));
        assertThat(LockDep.held().get(1)).hasToString(mmap + "/1");
        inner.upWrite();
        outer.upWrite();
        assertThat(LockDep.reports()).isEmpty();
    }

    @Test
    void takingTheNestedSubclassOutsideTheOuterIsAnInversion() {
        LockClass mmap = cls("mmap_lock");
        RwSem x = new RwSem(mmap);
        RwSem y = new RwSem(mmap);
        x.downWrite();
        y.downWriteNested(1);
        y.upWrite();
        x.upWrite();

        y.downWriteNested(1);
        try {
            assertThatThrownBy(x::downWrite)
                    .isInstanceOf(LockOrderViolation.class)
                    .hasMessageContaining("taking " + mmap + " while holding " + mmap + "/1");
        } finally {
            y.upWrite();
        }
    }

    @Test
    void takingForWriteWhatTheThreadHoldsForReadIsReportedInsteadOfHanging() {
        RwSem sem = rwsem("sem");
        sem.downRead();
        try {
            assertThatThrownBy(sem::downWrite)
                    .isInstanceOf(LockOrderViolation.class)
                    .hasMessageContaining("holds it for read");
            assertThat(sem.isWriteLockedByCurrentThread()).isFalse();
        } finally {
            sem.upRead();
        }
    }

    // --- release ---------------------------------------------------------------------------

    @Test
    void locksMayBeReleasedInAnyOrder() {
        KMutex a = mutex("a");
        RwSem b = rwsem("b");
        KMutex c = mutex("c");
        a.lock();
        b.downRead();
        c.lock();
        assertThat(LockDep.held()).containsExactly(a.lockClass(), b.lockClass(), c.lockClass());

        a.unlock();
        assertThat(LockDep.held()).containsExactly(b.lockClass(), c.lockClass());
        c.unlock();
        assertThat(LockDep.held()).containsExactly(b.lockClass());
        b.upRead();
        assertThat(LockDep.reports()).isEmpty();
    }

    @Test
    void releasingALockTheThreadDoesNotHoldIsReported() {
        assertThatThrownBy(() -> LockDep.released(new Object()))
                .isInstanceOf(LockOrderViolation.class)
                .hasMessageStartingWith("bad unlock balance detected");
    }

    @Test
    void unlockingAnUnheldWrapperFailsBeforeLockdepSeesIt() {
        KMutex m = mutex("m");
        assertThatThrownBy(m::unlock).isInstanceOf(IllegalMonitorStateException.class);
        assertThat(LockDep.reports()).isEmpty();
    }

    // --- the wrappers' exclusion -------------------------------------------------------------

    @Test
    void aWriterExcludesReadersOfOtherThreads() throws InterruptedException {
        RwSem sem = rwsem("sem");
        sem.downWrite();
        assertThat(sem.isLocked()).isTrue();
        assertThat(sem.isWriteLockedByCurrentThread()).isTrue();
        assertThat(sem.isReadLockedByCurrentThread()).isFalse();
        try {
            assertThat(tryDownReadFromAnotherThread(sem)).isFalse();
        } finally {
            sem.upWrite();
        }
        assertThat(sem.isLocked()).isFalse();
        assertThat(tryDownReadFromAnotherThread(sem)).isTrue();
    }

    /** Whether another thread gets a read hold without waiting (it gives it back at once). */
    private static boolean tryDownReadFromAnotherThread(RwSem sem) throws InterruptedException {
        CountDownLatch tried = new CountDownLatch(1);
        boolean[] got = new boolean[1];
        Thread reader = new Thread(() -> {
            got[0] = sem.tryDownRead();
            if (got[0]) {
                assertThat(sem.isReadLockedByCurrentThread()).isTrue();
                sem.upRead();
            }
            tried.countDown();
        });
        reader.start();
        assertThat(tried.await(10, TimeUnit.SECONDS)).isTrue();
        reader.join();
        return got[0];
    }

    @Test
    void aReaderExcludesWritersButNotReadersOfOtherThreads() throws InterruptedException {
        RwSem sem = rwsem("sem");
        CountDownLatch reading = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        Thread reader = new Thread(() -> {
            sem.downRead();
            try {
                reading.countDown();
                release.await(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } finally {
                sem.upRead();
            }
        });
        reader.start();
        try {
            assertThat(reading.await(10, TimeUnit.SECONDS)).isTrue();
            assertThat(sem.isLocked()).isTrue();
            assertThat(sem.isReadLockedByCurrentThread()).isFalse();
            assertThat(sem.tryDownWrite()).isFalse();
            assertThat(sem.tryDownRead()).isTrue();
            assertThat(sem.isReadLockedByCurrentThread()).isTrue();
            sem.upRead();
        } finally {
            release.countDown();
            reader.join();
        }
    }

    @Test
    void readHoldsAreCountedPerThread() {
        RwSem sem = rwsem("sem");
        sem.downRead();
        sem.downRead();
        assertThat(LockDep.held()).containsExactly(sem.lockClass());
        sem.upRead();
        assertThat(sem.isReadLockedByCurrentThread()).isTrue();
        assertThat(LockDep.held()).containsExactly(sem.lockClass());
        sem.upRead();
        assertThat(sem.isReadLockedByCurrentThread()).isFalse();
        assertThat(sem.isLocked()).isFalse();
    }

    @Test
    void aMutexExcludesOtherThreads() throws InterruptedException {
        KMutex m = mutex("m");
        m.lock();
        assertThat(m.isHeldByCurrentThread()).isTrue();
        assertThat(m.isLocked()).isTrue();
        boolean[] got = new boolean[1];
        Thread other = new Thread(() -> {
            got[0] = m.tryLock();
            if (got[0]) {
                m.unlock();
            }
        });
        other.start();
        other.join();
        m.unlock();
        assertThat(got[0]).isFalse();
        assertThat(m.isLocked()).isFalse();
        assertThat(m.isHeldByCurrentThread()).isFalse();
    }
}
