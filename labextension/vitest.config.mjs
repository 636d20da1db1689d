import { defineConfig } from "vitest/config";

// Unit tests only: pure modules in node, DOM modules under happy-dom (per-file comment).
export default defineConfig({
  test: {
    include: ["src/__tests__/**/*.test.ts"],
  },
});
