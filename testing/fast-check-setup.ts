// Property tests explore new inputs on every developer run, but CI replays one fixed seed so that a
// landing is judged on the code, not on the draw. Reproduce any run with FC_SEED=<seed printed on failure>.
import fc from 'fast-check';

const fromEnv = process.env.FC_SEED;
if (fromEnv !== undefined && fromEnv !== '') fc.configureGlobal({ seed: Number(fromEnv) });
else if (process.env.CI) fc.configureGlobal({ seed: 20261126 });
