package org.vmcore.api;

/**
 * An argument broke a rule of the API (the kernel's -EINVAL). The message names the argument,
 * its value and the rule, for example {@code va=0x1234: must be aligned to 2 MiB}.
 */
public class InvalidArgumentException extends VmException {
    private static final long serialVersionUID = 1L;

    /** The name of the argument. */
    private final String argument;
    /** Its value as shown in the message. */
    private final String value;
    /** The rule it broke. */
    private final String rule;

    /**
     * An argument broke a rule.
     *
     * @param argument the argument's name
     * @param value    its value; a {@code Long} is shown in hexadecimal
     * @param rule     the rule it broke, phrased as what it must be
     */
    public InvalidArgumentException(String argument, Object value, String rule) {
        super(argument + "=" + show(value) + ": " + rule);
        this.argument = argument;
        this.value = show(value);
        this.rule = rule;
    }

    /**
     * The argument's name.
     *
     * @return the argument's name
     */
    public String argument() {
        return argument;
    }

    /**
     * The argument's value as shown in the message.
     *
     * @return the argument's value as shown in the message
     */
    public String value() {
        return value;
    }

    /**
     * The rule the value broke.
     *
     * @return the rule the value broke
     */
    public String rule() {
        return rule;
    }

    private static String show(Object value) {
        if (value instanceof Long l) {
            return "0x" + Long.toHexString(l);
        }
        return String.valueOf(value);
    }
}
