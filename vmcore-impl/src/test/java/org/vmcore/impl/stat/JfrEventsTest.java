package org.vmcore.impl.stat;

import static org.assertj.core.api.Assertions.assertThat;
import static org.vmcore.impl.Fixtures.GIB;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import jdk.jfr.Recording;
import jdk.jfr.consumer.RecordedEvent;
import jdk.jfr.consumer.RecordingFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Machine;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.PageSize;
import org.vmcore.impl.Fixtures.SharedWindow;
import org.vmcore.impl.Fixtures;

/** The JFR events of faults, flushes, notifier invalidations, unshares and migration phases, recorded and read back. */
class JfrEventsTest {
    @Test
    void eventsAreRecordedWithTheirFields(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("vmcore.jfr");
        try (Recording recording = new Recording()) {
            for (String name : new String[] {"vmcore.Fault", "vmcore.TlbFlush", "vmcore.MmuNotifier", "vmcore.PmdUnshare",
                "vmcore.MigrationPhase"}) {
                recording.enable(name).withThreshold(Duration.ZERO);
            }
            recording.start();
            try (Machine machine = Machine.builder().node(2 * GIB).node(2 * GIB).cpus(2).hugePages(0, PageSize.SIZE_2M, 520)
                    .hugePages(1, PageSize.SIZE_2M, 16).build()) {
                SharedWindow window = Fixtures.sharedWindow(machine, GIB, 3 * GIB, false);
                AddressSpace a = window.a();
                AddressSpace b = window.b();
                a.registerNotifier(new MmuNotifier() { });
                a.fault(GIB, Access.WRITE);
                b.fault(3 * GIB, Access.READ);
                machine.cpu(0).switchTo(a);
                machine.cpu(0).load(GIB, 8);
                machine.cpu(1).switchTo(b);
                machine.cpu(1).load(3 * GIB, 8);
                machine.migration().movePages(a, new long[] {GIB}, new int[] {1}, MigrationService.MPOL_MF_MOVE);
            }
            recording.stop();
            recording.dump(file);
        }
        List<RecordedEvent> events = RecordingFile.readAllEvents(file);
        List<String> names = new ArrayList<>();
        events.forEach(e -> names.add(e.getEventType().getName()));
        assertThat(names).contains("vmcore.Fault", "vmcore.TlbFlush", "vmcore.MmuNotifier", "vmcore.PmdUnshare",
                "vmcore.MigrationPhase");
        RecordedEvent fault = events.stream().filter(e -> e.getEventType().getName().equals("vmcore.Fault")).findFirst().orElseThrow();
        assertThat(fault.getLong("address")).isEqualTo(GIB);
        assertThat(fault.getString("access")).isEqualTo("WRITE");
        assertThat(fault.getString("result")).isEqualTo("NEW_PAGE");
        RecordedEvent unshare = events.stream().filter(e -> e.getEventType().getName().equals("vmcore.PmdUnshare")).findFirst()
                .orElseThrow();
        assertThat(unshare.getLong("window")).isEqualTo(GIB);
        assertThat(unshare.getInt("sharersLeft")).isEqualTo(1);
        assertThat(events.stream().filter(e -> e.getEventType().getName().equals("vmcore.MigrationPhase"))
                .map(e -> e.getString("phase"))).containsExactly("unmap", "copy", "remap");
        RecordedEvent notifier = events.stream().filter(e -> e.getEventType().getName().equals("vmcore.MmuNotifier")).findFirst()
                .orElseThrow();
        assertThat(notifier.getString("event")).isEqualTo("CLEAR");
        assertThat(notifier.getLong("end") - notifier.getLong("start")).as("widened to the PUD window").isEqualTo(GIB);
        RecordedEvent flush = events.stream().filter(e -> e.getEventType().getName().equals("vmcore.TlbFlush")).findFirst()
                .orElseThrow();
        assertThat(flush.getLong("end") - flush.getLong("start")).as("the unshare flushes the whole PUD window").isEqualTo(GIB);
        assertThat(flush.getLong("start")).isEqualTo(GIB);
        assertThat(flush.getString("kind")).isEqualTo("mm (range over the ceiling)");
        assertThat(flush.getInt("cpus")).as("CPU 0, the one that runs a").isEqualTo(1);
    }
}
