package org.vmcore.examples;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/** Writes DOT pictures and renders them to SVG when Graphviz's {@code dot} is installed. */
final class Pictures {
    private Pictures() {
    }

    /** Whether {@code dot} can be run. */
    static boolean dotAvailable() {
        try {
            Process p = new ProcessBuilder("dot", "-V").redirectErrorStream(true).start();
            p.getInputStream().readAllBytes();
            return p.waitFor(10, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (IOException | InterruptedException e) {
            return false;
        }
    }

    /** Writes {@code dot} to {@code dir/name.dot}, and {@code name.svg} next to it if Graphviz is there; returns what was written. */
    static Path write(Path dir, String name, String dot, boolean render) throws IOException, InterruptedException {
        Files.createDirectories(dir);
        Path dotFile = dir.resolve(name + ".dot");
        Files.writeString(dotFile, dot);
        if (!render) {
            return dotFile;
        }
        Path svg = dir.resolve(name + ".svg");
        Process p = new ProcessBuilder("dot", "-Tsvg", "-o", svg.toString(), dotFile.toString()).redirectErrorStream(true).start();
        p.getInputStream().readAllBytes();
        return p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0 ? svg : dotFile;
    }
}
