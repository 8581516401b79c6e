package org.vmcore.x86.pgtable;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.Random;
import org.junit.jupiter.api.Test;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.x86.pgtable.MigrationEntry.Kind;

class SwapEntryTest {
    private static final long SEED = 0x5EED_0001L;

    @Test
    void typeNumbersFollowTheSixDotXLayout() {
        assertThat(SwapEntry.MAX_SWAPFILES).isEqualTo(23);
        assertThat(SwapEntry.TYPE_HWPOISON).isEqualTo(23);
        assertThat(SwapEntry.TYPE_MIGRATION_READ).isEqualTo(24);
        assertThat(SwapEntry.TYPE_MIGRATION_READ_EXCLUSIVE).isEqualTo(25);
        assertThat(SwapEntry.TYPE_MIGRATION_WRITE).isEqualTo(26);
        assertThat(SwapEntry.TYPE_DEVICE_FIRST).isEqualTo(27);
        assertThat(SwapEntry.TYPE_PTE_MARKER).isEqualTo(31);
    }

    @Test
    void layoutIsTypeInTopFiveBitsAndInvertedOffsetFromBit9() {
        long e = SwapEntry.make(3, 0x1234, 0);
        assertThat(e >>> 59).isEqualTo(3);
        assertThat((~e >>> 9) & ((1L << 50) - 1)).isEqualTo(0x1234);
        assertThat(e & 0x1FF).isZero(); // P, A, D, PS and PROTNONE clear
        assertThat(Pte.isSwap(e)).isTrue();
        assertThat(Pte.isPresent(e)).isFalse();
    }

    @Test
    void randomEntriesRoundTrip() {
        Random random = new Random(SEED);
        for (int i = 0; i < 100_000; i++) {
            int type = random.nextInt(32);
            long offset = random.nextLong() & ((1L << 50) - 1);
            long flags = random.nextLong() & SwapEntry.FLAG_BITS;
            long e = SwapEntry.make(type, offset, flags);
            assertThat(SwapEntry.type(e)).as("seed %x step %d", SEED, i).isEqualTo(type);
            assertThat(SwapEntry.offset(e)).as("seed %x step %d", SEED, i).isEqualTo(offset);
            assertThat(SwapEntry.flags(e)).as("seed %x step %d", SEED, i).isEqualTo(flags);
            assertThat(e & (Pte.PRESENT | Pte.PSE | Pte.PROTNONE)).isZero();
        }
    }

    @Test
    void migrationEntriesRoundTripWithAccessedDirtyAndSoftDirty() {
        Random random = new Random(SEED + 1);
        for (int i = 0; i < 20_000; i++) {
            Kind kind = Kind.values()[random.nextInt(3)];
            long pfn = random.nextLong() & ((1L << MigrationEntry.PFN_BITS) - 1);
            boolean young = random.nextBoolean();
            boolean dirty = random.nextBoolean();
            long flags = random.nextBoolean() ? SwapEntry.SOFT_DIRTY : 0;
            long e = MigrationEntry.make(kind, pfn, young, dirty, flags);
            assertThat(MigrationEntry.isMigration(e)).isTrue();
            assertThat(MigrationEntry.kind(e)).isEqualTo(kind);
            assertThat(MigrationEntry.isWrite(e)).isEqualTo(kind == Kind.WRITE);
            assertThat(MigrationEntry.pfn(e)).isEqualTo(pfn);
            assertThat(MigrationEntry.young(e)).isEqualTo(young);
            assertThat(MigrationEntry.dirty(e)).isEqualTo(dirty);
            assertThat(SwapEntry.flags(e)).isEqualTo(flags);
            assertThat(HwPoisonEntry.isHwPoison(e)).isFalse();
        }
    }

    @Test
    void makeReadableKeepsPageAccessedDirtyAndFlags() {
        Random random = new Random(SEED + 2);
        for (int i = 0; i < 20_000; i++) {
            Kind kind = Kind.values()[random.nextInt(3)];
            long pfn = random.nextLong() & ((1L << MigrationEntry.PFN_BITS) - 1);
            boolean young = random.nextBoolean();
            boolean dirty = random.nextBoolean();
            long flags = random.nextLong() & SwapEntry.FLAG_BITS;
            long r = MigrationEntry.makeReadable(MigrationEntry.make(kind, pfn, young, dirty, flags));
            assertThat(MigrationEntry.kind(r)).as("seed %x step %d", SEED + 2, i).isEqualTo(Kind.READ);
            assertThat(MigrationEntry.pfn(r)).as("seed %x step %d", SEED + 2, i).isEqualTo(pfn);
            assertThat(MigrationEntry.young(r)).as("seed %x step %d", SEED + 2, i).isEqualTo(young);
            assertThat(MigrationEntry.dirty(r)).as("seed %x step %d", SEED + 2, i).isEqualTo(dirty);
            assertThat(SwapEntry.flags(r)).as("seed %x step %d", SEED + 2, i).isEqualTo(flags);
        }
        assertThatThrownBy(() -> MigrationEntry.makeReadable(HwPoisonEntry.make(7)))
                .isInstanceOf(InvalidArgumentException.class).hasMessageContaining("migration entry");
    }

    @Test
    void hwpoisonEntriesAreRecognised() {
        long e = HwPoisonEntry.make(0xABCDE);
        assertThat(HwPoisonEntry.isHwPoison(e)).isTrue();
        assertThat(HwPoisonEntry.pfn(e)).isEqualTo(0xABCDE);
        assertThat(MigrationEntry.isMigration(e)).isFalse();
        assertThat(MigrationEntry.isMigration(Pte.leaf(5, org.vmcore.api.PageSize.SIZE_4K, Pte.PRESENT))).isFalse();
        assertThat(MigrationEntry.isMigration(0)).isFalse();
    }

    @Test
    void outOfRangeFieldsAreRejected() {
        assertThatThrownBy(() -> SwapEntry.make(32, 0, 0)).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("type=32");
        assertThatThrownBy(() -> SwapEntry.make(0, 1L << 50, 0)).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("offset=0x4000000000000");
        assertThatThrownBy(() -> SwapEntry.make(0, 0, Pte.PRESENT)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> MigrationEntry.make(Kind.READ, 1L << 40, false, false, 0))
                .isInstanceOf(InvalidArgumentException.class).hasMessageContaining("40 bits");
    }
}
