package org.vmcore.api;

/**
 * The result of a memory offline (hot-remove) of a PFN range.
 *
 * @param migratedPages   pages in use that were migrated out of the range
 * @param dissolvedHugePages free huge pages in the range that were taken out of their pools
 * @param offlinedFrames  frames of the range taken out of use
 */
public record OfflineResult(long migratedPages, long dissolvedHugePages, long offlinedFrames) {
}
