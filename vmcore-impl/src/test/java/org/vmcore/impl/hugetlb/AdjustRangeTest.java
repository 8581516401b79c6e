package org.vmcore.impl.hugetlb;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.vma.VmArea;

/** adjust_range_if_pmd_sharing_possible: the U1 cases of the semantics reference, section 7.2. */
class AdjustRangeTest {
    private static final long M = 1L << 20;
    private static final long G = 1L << 30;

    static Stream<Arguments> cases() {
        return Stream.of(
                Arguments.of("range across a window boundary widens to both windows", 0L, 2 * G, true, G - 2 * M, G + 2 * M, 0L, 2 * G),
                Arguments.of("one page widens to its window", 0L, 2 * G, true, 2 * M, 4 * M, 0L, G),
                Arguments.of("no whole aligned window in the VMA", 2 * M, G + 2 * M, true, 4 * M, 6 * M, 4 * M, 6 * M),
                Arguments.of("not VM_MAYSHARE", 0L, 2 * G, false, 2 * M, 4 * M, 2 * M, 4 * M),
                Arguments.of("range below the shareable part", G - 2 * M, 3 * G, true, G - 2 * M, G, G - 2 * M, G),
                Arguments.of("end of the VMA", 0L, 3 * G, true, 2 * G + 4 * M, 3 * G, 2 * G, 3 * G),
                Arguments.of("already whole windows", 0L, 3 * G, true, G, 2 * G, G, 2 * G));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void widensOnlyToWholeAlignedWindowsInsideTheVma(String name, long vmStart, long vmEnd, boolean shared, long start, long end,
                                                     long wantStart, long wantEnd) {
        VmArea vma = new VmArea(null, vmStart, vmEnd, Protection.READ_WRITE, shared ? VmaKind.HUGETLB_SHARED : VmaKind.HUGETLB_PRIVATE,
                false, null, null, 0, PageSize.SIZE_2M);
        assertThat(PmdSharing.adjustRangeIfPmdSharingPossible(vma, start, end)).isEqualTo(new PmdSharing.Range(wantStart, wantEnd));
    }
}
