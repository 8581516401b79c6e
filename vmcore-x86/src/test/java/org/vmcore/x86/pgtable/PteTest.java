package org.vmcore.x86.pgtable;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.PageSize;

class PteTest {

    @Test
    void everyBitSitsAtItsArchitecturalPosition() {
        assertThat(Pte.PRESENT).isEqualTo(1L << 0);
        assertThat(Pte.RW).isEqualTo(1L << 1);
        assertThat(Pte.USER).isEqualTo(1L << 2);
        assertThat(Pte.PWT).isEqualTo(1L << 3);
        assertThat(Pte.PCD).isEqualTo(1L << 4);
        assertThat(Pte.ACCESSED).isEqualTo(1L << 5);
        assertThat(Pte.DIRTY).isEqualTo(1L << 6);
        assertThat(Pte.PSE).isEqualTo(1L << 7);
        assertThat(Pte.PAT).isEqualTo(1L << 7);
        assertThat(Pte.GLOBAL).isEqualTo(1L << 8);
        assertThat(Pte.PROTNONE).isEqualTo(1L << 8);
        assertThat(Pte.SPECIAL).isEqualTo(1L << 9);
        assertThat(Pte.UFFD_WP).isEqualTo(1L << 10);
        assertThat(Pte.SOFT_DIRTY).isEqualTo(1L << 11);
        assertThat(Pte.PAT_LARGE).isEqualTo(1L << 12);
        assertThat(Pte.SOFTW4).isEqualTo(1L << 57);
        assertThat(Pte.SOFTW5).isEqualTo(1L << 58);
        assertThat(Pte.PKEY_MASK).isEqualTo(0xFL << 59);
        assertThat(Pte.NX).isEqualTo(1L << 63);
        assertThat(Pte.PFN_MASK).isEqualTo(0x000F_FFFF_FFFF_F000L);
        assertThat(Pte.PMD_PFN_MASK).isEqualTo(0x000F_FFFF_FFE0_0000L);
        assertThat(Pte.PUD_PFN_MASK).isEqualTo(0x000F_FFFF_C000_0000L);
        assertThat(Pte.TABLE).isEqualTo(0x67L);
    }

    @Test
    void leafEntriesPutThePfnInBits12To51AndPsInHugeLeaves() {
        long e4k = Pte.leaf(0x12345, PageSize.SIZE_4K, Pte.PRESENT | Pte.RW | Pte.USER | Pte.NX);
        assertThat(e4k).isEqualTo(0x8000_0000_1234_5007L);
        assertThat(Pte.pfn(e4k)).isEqualTo(0x12345);

        long e2m = Pte.leaf(0x200, PageSize.SIZE_2M, Pte.PRESENT | Pte.RW);
        assertThat(e2m).isEqualTo(0x20_0083L);
        assertThat(Pte.pfn(e2m, PageSize.SIZE_2M)).isEqualTo(0x200);
        assertThat(Pte.isLeaf(e2m, Level.PMD)).isTrue();

        long e1g = Pte.leaf(0x40000, PageSize.SIZE_1G, Pte.PRESENT | Pte.PAT_LARGE);
        assertThat(e1g).isEqualTo(0x4000_1081L);
        assertThat(Pte.pfn(e1g, PageSize.SIZE_1G)).isEqualTo(0x40000);
        assertThat(Pte.isLeaf(e1g, Level.PUD)).isTrue();
        assertThat(Pte.isLeaf(Pte.table(7), Level.PUD)).isFalse();
    }

    @Test
    void protNoneEntriesInvertThePfnForL1tf() {
        long e = Pte.leaf(0x12345, PageSize.SIZE_4K, Pte.PROTNONE | Pte.USER);
        assertThat(e & Pte.PRESENT).isZero();
        assertThat(Pte.isInverted(e)).isTrue();
        assertThat((e & Pte.PFN_MASK) >>> 12).isEqualTo(~0x12345L & (Pte.PFN_MASK >>> 12));
        assertThat(Pte.pfn(e)).isEqualTo(0x12345);
        assertThat(Pte.isPresent(e)).isTrue();
        assertThat(Pte.isSwap(e)).isFalse();

        long huge = Pte.leaf(0x400, PageSize.SIZE_2M, Pte.PROTNONE);
        assertThat(Pte.pfn(huge, PageSize.SIZE_2M)).isEqualTo(0x400);
    }

    @Test
    void noneIgnoresAccessedAndDirty() {
        assertThat(Pte.isNone(0)).isTrue();
        assertThat(Pte.isNone(Pte.ACCESSED | Pte.DIRTY)).isTrue();
        assertThat(Pte.isNone(Pte.RW)).isFalse();
        assertThat(Pte.isPresent(Pte.PRESENT)).isTrue();
    }

    @Test
    void protectionKeysLiveInBits59To62() {
        long e = Pte.leaf(1, PageSize.SIZE_4K, Pte.PRESENT | (9L << Pte.PKEY_SHIFT));
        assertThat(Pte.pkey(e)).isEqualTo(9);
        assertThat(e >>> 59 & 0xF).isEqualTo(9);
    }

    @Test
    void illegalLeafFlagsAreReported() {
        assertThat(Pte.illegalLeafFlags(Pte.PRESENT | Pte.PSE, PageSize.SIZE_2M)).isEqualTo(Pte.PSE);
        assertThat(Pte.illegalLeafFlags(Pte.PRESENT | Pte.PAT, PageSize.SIZE_4K)).isZero();
        assertThat(Pte.illegalLeafFlags(Pte.PRESENT | 0x1000L, PageSize.SIZE_4K)).isEqualTo(0x1000L);
        assertThatThrownBy(() -> PageSize.ofBytes(8192)).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("pageSize=0x2000");
    }
}
