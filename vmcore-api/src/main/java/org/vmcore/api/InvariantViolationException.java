package org.vmcore.api;

import java.util.List;

/** The machine's state broke its invariants: a bug in vmcore, reported with every violation found. */
public class InvariantViolationException extends VmException {
    private static final long serialVersionUID = 1L;
    /** The violations found. */
    private final transient List<String> violations;

    /**
     * The violations found after {@code operation}.
     *
     * @param operation the operation after which the check ran
     * @param violations one line per violated rule
     */
    public InvariantViolationException(String operation, List<String> violations) {
        super("invariants violated after " + operation + ":\n  " + String.join("\n  ", violations));
        this.violations = List.copyOf(violations);
    }

    /**
     * One line per violated rule.
     *
     * @return one line per violated rule
     */
    public List<String> violations() {
        return violations;
    }
}
