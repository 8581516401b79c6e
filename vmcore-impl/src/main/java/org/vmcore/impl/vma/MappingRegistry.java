package org.vmcore.impl.vma;

import java.util.ArrayList;
import java.util.List;
import org.eclipse.collections.impl.map.mutable.primitive.LongObjectHashMap;
import org.vmcore.api.HugetlbFile;
import org.vmcore.impl.base.MachineLock;

/**
 * Turns a page's mapping field back into its anon_vma or address_space: the registry that lets
 * rmap, migration and the checker go from a frame descriptor to the VMAs that may map it. It
 * hands out the identifiers too (even numbers, with the low bit set for an anon_vma, like
 * PAGE_MAPPING_ANON).
 *
 * <p>Touches nothing but its own map; callers hold the machine lock.
 */
public final class MappingRegistry {
    /** Low bit of a page's mapping field: the mapping is an anon_vma (PAGE_MAPPING_ANON). */
    public static final long MAPPING_ANON = 1;

    private final MachineLock lock;
    private final LongObjectHashMap<MappingOwner> owners = new LongObjectHashMap<>();
    private long nextId = 2;

    public MappingRegistry(MachineLock lock) {
        this.lock = lock;
    }

    /** A new address_space, registered: of the hugetlbfs {@code file}, or of a shmem object when null. */
    public synchronized FileMapping newFileMapping(HugetlbFile file) {
        FileMapping mapping = new FileMapping(nextId += 2, file);
        owners.put(mapping.id(), mapping);
        return mapping;
    }

    /** A new anon_vma, registered, in the family of {@code parent} (null for a new root). */
    public synchronized AnonVma newAnonVma(AnonVma parent) {
        AnonVma anonVma = new AnonVma((nextId += 2) | MAPPING_ANON, parent);
        owners.put(anonVma.id(), anonVma);
        return anonVma;
    }

    /** Forgets a file mapping or anon_vma that nothing refers to any more. */
    public synchronized void unregister(long id) {
        owners.remove(id);
    }

    /** The anon_vma or address_space behind a page's mapping field, or null. */
    public synchronized MappingOwner owner(long id) {
        return owners.get(id);
    }

    /** The page-cache mappings of every hugetlbfs file and shmem object. */
    public synchronized List<FileMapping> fileMappings() {
        List<FileMapping> out = new ArrayList<>();
        owners.forEachValue(o -> {
            if (o instanceof FileMapping m) {
                out.add(m);
            }
        });
        return out;
    }
}
