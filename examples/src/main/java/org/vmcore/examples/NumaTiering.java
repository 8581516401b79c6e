package org.vmcore.examples;

import java.util.Arrays;
import java.util.Random;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MovePagesResult;
import org.vmcore.api.Protection;

/**
 * Memory tiering: node 0 is a small fast tier, node 1 a large slow one. A process's pages start
 * on the slow node; its accesses follow a skewed distribution. Every epoch a promotion policy
 * reads and clears the accessed bits (as page-idle tracking does), promotes the pages touched in
 * two epochs running to the fast node with move_pages(2) and demotes the fast pages left
 * untouched.
 *
 * <p>Run: {@code ./run-example NumaTiering [--epochs=N] [--seed=X]}
 */
public final class NumaTiering {
    private static final int PAGES = 512;
    private static final int HOT = 32;

    private NumaTiering() {
    }

    public static void main(String[] args) {
        int epochs = 8;
        long seed = 1;
        for (String arg : args) {
            String[] kv = arg.split("=", 2);
            switch (kv[0]) {
                case "--epochs" -> epochs = Integer.parseInt(kv[1]);
                case "--seed" -> seed = Long.parseLong(kv[1]);
                default -> {
                    System.err.println("NumaTiering: unknown option " + arg + " (known: --epochs=N, --seed=X)");
                    System.exit(2);
                }
            }
        }
        run(epochs, seed);
    }

    /** Runs the policy; returns the share of the last epoch's accesses served by the fast node. */
    static double run(int epochs, long seed) {
        try (Machine machine = Machine.builder().node(1L << 30).node(4L << 30).build()) {
            AddressSpace mm = machine.createAddressSpace(1); // allocate on the slow node
            long base = mm.mmap(0, PAGES * 4096L, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS
                    | MapFlags.MAP_POPULATE);
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(mm);
            Random random = new Random(seed);
            long promoted = 0;
            long demoted = 0;
            double fastShare = 0;
            boolean[] wasYoung = new boolean[PAGES];
            System.out.printf("%d pages on the slow node; %d of them hot%n", PAGES, HOT);
            for (int epoch = 0; epoch < epochs; epoch++) {
                for (int i = 0; i < PAGES; i++) {
                    // start the epoch with every page idle; the flush matters: a cached translation
                    // would let accesses through without the walker setting A again
                    mm.clearFlushYoung(base + i * 4096L);
                }
                int fastHits = 0;
                int accesses = 4000;
                for (int n = 0; n < accesses; n++) {
                    int page = random.nextInt(100) < 95 ? random.nextInt(HOT) : random.nextInt(PAGES); // 95% to the hot set
                    long va = base + page * 4096L;
                    cpu.store(va, 8, cpu.load(va, 8) + 1);
                    fastHits += machine.page(mm.pageAt(va)).node() == 0 ? 1 : 0;
                }
                fastShare = fastHits / (double) accesses;
                long[] up = new long[PAGES];
                long[] down = new long[PAGES];
                int nu = 0;
                int nd = 0;
                for (int i = 0; i < PAGES; i++) {
                    long va = base + i * 4096L;
                    boolean young = mm.testYoung(va);
                    int node = machine.page(mm.pageAt(va)).node();
                    if (young && wasYoung[i] && node == 1) { // hot two epochs running: promote
                        up[nu++] = va;
                    } else if (!young && node == 0) { // idle for a whole epoch: demote
                        down[nd++] = va;
                    }
                    wasYoung[i] = young;
                }
                promoted += move(machine, mm, Arrays.copyOf(up, nu), 0);
                demoted += move(machine, mm, Arrays.copyOf(down, nd), 1);
                System.out.printf("epoch %d: %.0f%% of accesses on the fast node; promoted %d, demoted %d%n", epoch, 100 * fastShare,
                        nu, nd);
            }
            System.out.printf("summary: %d pages promoted, %d demoted over %d epochs; pgmigrate_success=%d%n", promoted, demoted,
                    epochs, machine.stats().vmstat().get("pgmigrate_success"));
            return fastShare;
        }
    }

    private static int move(Machine machine, AddressSpace mm, long[] addresses, int node) {
        if (addresses.length == 0) {
            return 0;
        }
        int[] nodes = new int[addresses.length];
        Arrays.fill(nodes, node);
        MovePagesResult r = machine.migration().movePages(mm, addresses, nodes, MigrationService.MPOL_MF_MOVE);
        return addresses.length - r.notMigrated();
    }
}
