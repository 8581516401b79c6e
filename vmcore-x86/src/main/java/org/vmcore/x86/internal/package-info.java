/**
 * The engine's side of the x86 layer, exported only to {@code org.vmcore.impl}: the page tables
 * with their raw entry operations ({@link org.vmcore.x86.internal.RawPageTable}), the frame
 * descriptors with their updates ({@link org.vmcore.x86.internal.MemMap}), the frames' host
 * pages ({@link org.vmcore.x86.internal.DirectMap}), the page-table frames and windows
 * ({@link org.vmcore.x86.internal.PageTableFrames}), the TLB's L1 with its host pages
 * ({@link org.vmcore.x86.internal.L1Dtlb}), and {@link org.vmcore.x86.internal.SharedSecrets},
 * through which the generic mm reaches them from the public objects.
 */
package org.vmcore.x86.internal;
