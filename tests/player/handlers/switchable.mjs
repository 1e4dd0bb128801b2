// A Lambda@Edge handler for tests that answers 404 for a distribution marked closed, as the
// copilot does for a closed region, and passes everything else. Tests import this module and call
// setClosed(); the edge imports the same module instance, as a warm Lambda@Edge instance keeps its
// module state between invocations.
const closed = new Set();

export function setClosed(domain, isClosed) {
  if (isClosed) closed.add(domain);
  else closed.delete(domain);
}

export const handler = async (event) => {
  const cf = event.Records[0].cf;
  if (closed.has(cf.config.distributionDomainName)) {
    return {
      status: '404',
      statusDescription: 'Not Found',
      headers: {
        'content-type': [{ key: 'Content-Type', value: 'text/plain' }],
        'cache-control': [{ key: 'Cache-Control', value: 'max-age=0' }],
      },
      body: 'closed\n',
    };
  }
  return cf.config.eventType === 'origin-response' ? cf.response : cf.request;
};
