export * from './codec.js'
export * from './schemas.js'
export {
  commandSigningBytes,
  generateSigningKey,
  privateKeyFromPem,
  publicKeyFromPem,
  publicKeysFromPem,
  signCommand,
  verifyCommand,
} from './signing.js'
export * from './topics.js'
export * from './vocabulary.js'
