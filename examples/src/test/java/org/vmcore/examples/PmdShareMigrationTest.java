package org.vmcore.examples;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

class PmdShareMigrationTest {
    private static String capture(PmdShareMigration.Options options, PmdShareMigration.Outcome[] out) throws Exception {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        PrintStream old = System.out;
        System.setOut(new PrintStream(bytes, true, StandardCharsets.UTF_8));
        try {
            out[0] = PmdShareMigration.run(options);
            System.out.println(out[0].lastLine());
        } finally {
            System.setOut(old);
        }
        return bytes.toString(StandardCharsets.UTF_8);
    }

    @Test
    void withTheFixNoWriteIsLost() throws Exception {
        PmdShareMigration.Outcome[] out = new PmdShareMigration.Outcome[1];
        String report = capture(new PmdShareMigration.Options(false, 3, 0.4, 7), out);
        assertThat(out[0].migrations()).isPositive();
        assertThat(out[0].writes()).isPositive();
        assertThat(out[0].lostWrites()).isZero();
        assertThat(out[0].staleUses()).isZero();
        assertThat(report).contains("every process has nr_pmds=1; page 0 has mapcount 1 for 3 mappers");
        String last = report.strip().lines().reduce((a, b) -> b).orElseThrow();
        assertThat(last).matches("mode=fixed sharers=3 migrations=[1-9]\\d* writes=[1-9]\\d* lost_writes=0");
    }

    @Test
    void withTheRegressionWritesAreLostAndTheDetectorSeesThem() throws Exception {
        PmdShareMigration.Outcome[] out = new PmdShareMigration.Outcome[1];
        String report = capture(new PmdShareMigration.Options(true, 3, 0.4, 7), out);
        assertThat(out[0].lostWrites()).isPositive();
        assertThat(out[0].staleUses()).isPositive();
        String last = report.strip().lines().reduce((a, b) -> b).orElseThrow();
        assertThat(last).matches("mode=pre-017b1660 sharers=3 migrations=[1-9]\\d* writes=[1-9]\\d* lost_writes=[1-9]\\d*");
    }

    @Test
    void optionsAreParsedAndValidated() {
        var o = PmdShareMigration.Options.parse(new String[] {"--regression=pre-017b1660", "--sharers=8", "--seconds=1.5", "--seed=3"});
        assertThat(o).isEqualTo(new PmdShareMigration.Options(true, 8, 1.5, 3));
        assertThat(PmdShareMigration.Options.parse(new String[0])).isEqualTo(new PmdShareMigration.Options(false, 4, 2, 1));
        assertThatThrownBy(() -> PmdShareMigration.Options.parse(new String[] {"--sharers=1"})).hasMessageContaining("between 2 and 64");
        assertThatThrownBy(() -> PmdShareMigration.Options.parse(new String[] {"--seconds=x"})).hasMessageContaining("needs a number");
        assertThatThrownBy(() -> PmdShareMigration.Options.parse(new String[] {"--regression=new"})).hasMessageContaining("pre-017b1660");
        assertThatThrownBy(() -> PmdShareMigration.Options.parse(new String[] {"--fast"})).hasMessageContaining("unknown option");
    }
}
