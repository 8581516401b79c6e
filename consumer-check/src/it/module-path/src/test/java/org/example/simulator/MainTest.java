package org.example.simulator;

/** A plain test (surefire's POJO provider, no framework): runs Main on the module path, patched into the module. */
public class MainTest {
    public void testStoreAndLoadOnTheModulePath() {
        Main.main(new String[] {"module-path"});
    }
}
