// Writes the element and isotope tables of the chemical-elements package as plain JSON,
// because the package ships them only as JavaScript modules.
// Usage: node export-chemical-elements.js PACKAGE_DIR OUT_DIR
'use strict';
const fs = require('fs');
const path = require('path');

const [packageDir, outDir] = process.argv.slice(2);
if (!packageDir || !outDir) {
  console.error('usage: node export-chemical-elements.js PACKAGE_DIR OUT_DIR');
  process.exit(2);
}
const lib = require(path.resolve(packageDir, 'lib/src/index.js'));

// One record per isotope, so that the importer's flat mapping can address it.
const isotopes = [];
for (const element of lib.elementsAndIsotopes) {
  for (const isotope of element.isotopes) {
    isotopes.push({ symbol: element.symbol, ...isotope });
  }
}
fs.writeFileSync(path.join(outDir, 'elements.json'), JSON.stringify(lib.elements, null, 1));
fs.writeFileSync(path.join(outDir, 'isotopes.json'), JSON.stringify(isotopes, null, 1));
console.log(`chemical-elements: ${lib.elements.length} elements, ${isotopes.length} isotopes`);
