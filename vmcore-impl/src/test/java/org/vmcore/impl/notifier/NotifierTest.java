package org.vmcore.impl.notifier;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.impl.Fixtures.SharedWindow;
import org.vmcore.impl.Fixtures;

/** Which notifier callbacks each engine path makes, in which order, with which ranges. */
class NotifierTest {
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;
    private static final long VA = 0x10_0000_0000L;

    private final Machine machine = Machine.builder().node(4 * GIB).hugePages(0, PageSize.SIZE_2M, 600).checkInvariantsAfterEveryOperation(true).build();

    @AfterEach
    void close() {
        machine.close();
    }

    /** Records every call as one line. */
    static final class Recorder implements MmuNotifier {
        final List<String> calls = new ArrayList<>();

        private static String r(long start, long end) {
            return String.format("[%x,%x)", start, end);
        }

        @Override
        public void invalidateRangeStart(NotifierRange range) {
            calls.add("start " + range.event() + " " + r(range.start(), range.end()));
        }

        @Override
        public void invalidateRangeEnd(NotifierRange range) {
            calls.add("end " + range.event() + " " + r(range.start(), range.end()));
        }

        @Override
        public void invalidateSecondaryTlbs(AddressSpace mm, long start, long end) {
            calls.add("secondary " + r(start, end));
        }

        @Override
        public boolean clearFlushYoung(AddressSpace mm, long start, long end) {
            calls.add("clearFlushYoung " + r(start, end));
            return false;
        }

        @Override
        public boolean clearYoung(AddressSpace mm, long start, long end) {
            calls.add("clearYoung " + r(start, end));
            return true;
        }

        @Override
        public boolean testYoung(AddressSpace mm, long address) {
            calls.add(String.format("testYoung %x", address));
            return false;
        }

        @Override
        public void release(AddressSpace mm) {
            calls.add("release");
        }
    }

    private Recorder register(AddressSpace mm) {
        Recorder r = new Recorder();
        mm.registerNotifier(r);
        return r;
    }

    @Test
    void munmapAnnouncesTheRangeFlushesThenEnds() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 8 * 4096, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE);
        Recorder r = register(mm);
        mm.munmap(VA + 4096, 2 * 4096);
        assertThat(r.calls).containsExactly("start UNMAP [1000001000,1000003000)", "secondary [1000001000,1000003000)",
                "end UNMAP [1000001000,1000003000)");
    }

    @Test
    void mprotectOfAnonymousMemory() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 8 * 4096, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE);
        Recorder r = register(mm);
        mm.mprotect(VA, 4 * 4096, Protection.READ);
        assertThat(r.calls).containsExactly("start PROTECTION_VMA [1000000000,1000004000)",
                "secondary [1000000000,1000004000)", "end PROTECTION_VMA [1000000000,1000004000)");
    }

    @Test
    void hugetlbMprotectOfASharedWindowCoversTheWindow() {
        SharedWindow window = Fixtures.sharedWindow(machine, GIB, GIB, true);
        AddressSpace mm = window.a();
        AddressSpace other = window.b();
        other.fault(GIB, Access.READ);
        Recorder r = register(mm);
        mm.mprotect(GIB, GIB, Protection.READ); // hugetlb_change_protection unshares the window
        assertThat(r.calls).containsExactly("start PROTECTION_VMA [40000000,80000000)", "secondary [40000000,80000000)",
                "end PROTECTION_VMA [40000000,80000000)");
    }

    @Test
    void splittingASharedWindowNotifiesTheUnshareOfTheWholeWindow() {
        SharedWindow window = Fixtures.sharedWindow(machine, GIB, GIB, true);
        AddressSpace a = window.a();
        AddressSpace b = window.b();
        b.fault(GIB, Access.READ);
        Recorder ra = register(a);
        Recorder rb = register(b);
        b.munmap(GIB + 4 * MIB, 2 * MIB);
        assertThat(rb.calls).containsExactly(
                "start CLEAR [40000000,80000000)", "secondary [40000000,80000000)", "end CLEAR [40000000,80000000)",
                "start UNMAP [40400000,40600000)", "end UNMAP [40400000,40600000)");
        assertThat(ra.calls).as("the other sharer hears nothing").isEmpty();
    }

    @Test
    void copyOnWriteBreakNotifiesThePage() {
        AddressSpace parent = machine.createAddressSpace();
        parent.mmap(VA, 4 * 4096, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE);
        Recorder rp = register(parent);
        AddressSpace child = parent.fork();
        assertThat(rp.calls).as("fork write-protects the parent, then flushes it").containsExactly(
                "start PROTECTION_PAGE [1000000000,1000004000)", "end PROTECTION_PAGE [1000000000,1000004000)",
                "secondary [0,800000000000)");
        Recorder rc = register(child);
        child.fault(VA + 4096, Access.WRITE);
        assertThat(rc.calls).containsExactly("start CLEAR [1000001000,1000002000)", "secondary [1000001000,1000002000)",
                "end CLEAR [1000001000,1000002000)");
        rp.calls.clear();
        parent.fault(VA + 4096, Access.WRITE);
        assertThat(rp.calls).as("reusing the page in place needs no invalidation").isEmpty();
    }

    @Test
    void youngCallbacksAndReleaseAtExit() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 4096, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE);
        Recorder r = register(mm);
        assertThat(mm.testYoung(VA)).as("a populated page has A set").isTrue();
        assertThat(mm.clearFlushYoung(VA)).isTrue();
        assertThat(mm.testYoung(VA)).isFalse();
        assertThat(mm.clearYoung(VA)).as("the secondary MMU says young").isTrue();
        assertThat(r.calls).containsExactly("testYoung 1000000000", "secondary [1000000000,1000001000)",
                "clearFlushYoung [1000000000,1000001000)", "testYoung 1000000000", "clearYoung [1000000000,1000001000)");
        r.calls.clear();
        mm.close();
        assertThat(r.calls).as("release, and nothing after it").containsExactly("release");
    }

    @Test
    void registrationIsValidated() {
        AddressSpace mm = machine.createAddressSpace();
        Recorder r = register(mm);
        assertThatThrownBy(() -> mm.registerNotifier(r)).isInstanceOf(InvalidArgumentException.class).hasMessageContaining("twice");
        assertThatThrownBy(() -> mm.registerNotifier(null)).isInstanceOf(InvalidArgumentException.class);
        assertThat(mm.unregisterNotifier(r)).isTrue();
        assertThat(mm.unregisterNotifier(r)).isFalse();
    }
}
