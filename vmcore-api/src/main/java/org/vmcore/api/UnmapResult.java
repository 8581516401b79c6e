package org.vmcore.api;

import java.util.List;

/**
 * The result of {@link RmapWalker#tryToUnmap} or {@link RmapWalker#tryToMigrate}.
 *
 * @param pfn      the page
 * @param mappings what happened to each mapping, in walk order
 * @param mapcount the page's mapcount afterwards
 */
public record UnmapResult(long pfn, List<MappingResult> mappings, int mapcount) {
    /** Copies the list. */
    public UnmapResult {
        mappings = List.copyOf(mappings);
    }

    /**
     * Whether the page is no longer mapped (the walk's done condition held).
     *
     * @return whether the page is no longer mapped (the walk's done condition held)
     */
    public boolean success() {
        return mapcount == 0;
    }
}
