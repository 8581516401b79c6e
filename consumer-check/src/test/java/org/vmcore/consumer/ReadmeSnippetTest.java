package org.vmcore.consumer;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * README's "Using it" shows the pom the consumer builds use, exactly: the consumer projects under
 * src/it (built by maven-invoker-plugin in this module) are the README's text with the version
 * filled in, so a snippet that stops building fails the build.
 */
class ReadmeSnippetTest {
    private static final Path README = Path.of("..", "README.md");
    private static final Path IT = Path.of("src", "it");
    private static final String VERSION = System.getProperty("vmcore.version");
    private static final String JMH_DEPENDENCY =
            "    <dependency><groupId>org.openjdk.jmh</groupId><artifactId>jmh-core</artifactId><version>1.37</version></dependency>\n";
    private static final String IMPL_DEPENDENCY =
            "    <dependency><groupId>org.vmcore</groupId><artifactId>vmcore-impl</artifactId></dependency>\n";
    private static final String COMPILER_DEPENDENCIES_END = "        </dependencies>\n      </plugin>\n      <plugin> <!-- the same, for tests";

    @Test
    void theClassPathAndModulePathConsumersUseReadmesPom() throws IOException {
        String readmePom = usingItXmlBlocks().get(0);

        assertThat(readmePom).contains("<version>" + VERSION + "</version>");
        assertThat(consumerPom("class-path")).isEqualTo(readmePom);
        assertThat(consumerPom("module-path")).isEqualTo(readmePom);
    }

    @Test
    void theJmhConsumerIsReadmesPomWithJmhCoreAndReadmesProcessorConfiguration() throws IOException {
        List<String> blocks = usingItXmlBlocks();
        String readmePom = blocks.get(0);
        String processorConfiguration = blocks.get(1);
        assertThat(readmePom).contains(IMPL_DEPENDENCY, COMPILER_DEPENDENCIES_END);

        String expected = readmePom
                .replace(IMPL_DEPENDENCY, IMPL_DEPENDENCY + JMH_DEPENDENCY)
                .replace(COMPILER_DEPENDENCIES_END, "        </dependencies>\n" + processorConfiguration
                        + COMPILER_DEPENDENCIES_END.substring("        </dependencies>\n".length()));
        assertThat(consumerPom("jmh")).isEqualTo(expected);
        assertThat(Files.readString(README)).contains("`org.openjdk.jmh:jmh-core:1.37`");
    }

    private static String consumerPom(String project) throws IOException {
        return Files.readString(IT.resolve(project).resolve("pom.xml")).replace("@project.version@", VERSION);
    }

    /** The ```xml blocks of README's "## Using it" section, each ending with a newline. */
    private static List<String> usingItXmlBlocks() throws IOException {
        String readme = Files.readString(README);
        int start = readme.indexOf("\n## Using it\n");
        assertThat(start).as("README has a \"## Using it\" section").isNotNegative();
        int end = readme.indexOf("\n## ", start + 1);
        String section = readme.substring(start, end < 0 ? readme.length() : end);
        List<String> blocks = new ArrayList<>();
        int from = 0;
        while (true) {
            int open = section.indexOf("```xml\n", from);
            if (open < 0) {
                break;
            }
            int close = section.indexOf("\n```", open);
            blocks.add(section.substring(open + "```xml\n".length(), close + 1));
            from = close + 4;
        }
        assertThat(blocks).as("README's xml blocks under Using it: the pom, the JMH processor configuration").hasSize(2);
        return blocks;
    }
}
