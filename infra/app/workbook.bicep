// Azure Monitor workbook on the Application Insights component: runs per identity, durations, exported
// volume and item failures by reason. The queries live in workbook.json; the shared projections of the
// BackupRunCompleted and BackupItemFailed events (queries/backup-runs.kql, queries/item-failures.kql) are
// spliced in as JSON strings.
param location string = resourceGroup().location
param tags object = {}
param applicationInsightsId string
param displayName string = 'ArcGIS org backup'

var backupRuns = loadTextContent('queries/backup-runs.kql')
var backupRunsJson = replace(replace(replace(replace(backupRuns, '\\', '\\\\'), '"', '\\"'), '\r', ''), '\n', '\\n')
var itemFailures = loadTextContent('queries/item-failures.kql')
var itemFailuresJson = replace(replace(replace(replace(itemFailures, '\\', '\\\\'), '"', '\\"'), '\r', ''), '\n', '\\n')
var serializedData = replace(
  replace(
    replace(loadTextContent('workbook.json'), '{{BACKUP_RUNS}}', backupRunsJson),
    '{{ITEM_FAILURES}}',
    itemFailuresJson
  ),
  '{{APP_INSIGHTS_ID}}',
  applicationInsightsId
)

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, applicationInsightsId, 'arcgis-org-backup-workbook')
  location: location
  tags: union(tags, {
    'hidden-title': displayName
  })
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: applicationInsightsId
    version: '1.0'
    serializedData: serializedData
  }
}

output id string = workbook.id
