export * from './native/index.js';
