// The loop the offline CRD validators share (components/monitoring/schema/validate.mjs,
// keda/schema/validate.mjs): each imports the @kubernetes-models classes of its own npm package
// and hands them here with the apiVersion they belong to.
//
// Reads a JSON array of objects on stdin; prints one line per object ("ok Kind/name" or the
// errors) and exits 1 if any is invalid or of another kind or apiVersion.
export async function validateStdin(kinds, apiVersion) {
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  let failed = 0;
  for (const object of JSON.parse(input)) {
    const name = `${object.kind}/${object.metadata?.name}`;
    const Model = kinds[object.kind];
    if (!Model || object.apiVersion !== apiVersion) {
      console.log(`unknown ${object.apiVersion} ${name}`);
      failed++;
      continue;
    }
    try {
      new Model(object).validate();
      console.log(`ok ${name}`);
    } catch (error) {
      console.log(`invalid ${name}: ${error.message}`);
      failed++;
    }
  }
  process.exit(failed ? 1 : 0);
}
